/*
 * emulation-failure: an instruction KVM cannot complete. Built twice:
 *
 * emulation-failure (-DVARIANT_MMIO_FETCH), any KVM host:
 *   emulation-failure: jumping to 0xd0000000 (MMIO hole, no memory)
 * The instruction fetch hits an address with neither RAM nor a device
 * behind it (identity-mapped by the boot page tables), so KVM cannot
 * emulate it.
 *
 * emulation-failure-cmpxchg16b (-DVARIANT_CMPXCHG16B), PVM hosts only:
 *   emulation-failure: lock cmpxchg16b at CPL 0
 * PVM emulates kernel-mode instructions and its emulator lacks this one;
 * hardware KVM executes it, so there the guest prints
 * "emulation-failure: still running" and exits with 0x11 (status 35).
 *
 * Expected: KVM_EXIT_INTERNAL_ERROR (emulation failure), status 10.
 */
#include "rt.h"

int main(void) {
#if defined(VARIANT_MMIO_FETCH)
    printf("emulation-failure: jumping to 0xd0000000 (MMIO hole, no memory)\n");
    ((void (*)(void))0xd0000000ul)();
#elif defined(VARIANT_CMPXCHG16B)
    static struct { uint64_t lo, hi; } __attribute__((aligned(16))) m;
    printf("emulation-failure: lock cmpxchg16b at CPL 0\n");
    __asm__ volatile("lock cmpxchg16b %0" : "+m"(m) : "a"(0), "d"(0), "b"(1), "c"(1) : "memory", "cc");
#else
#error "build with -DVARIANT_MMIO_FETCH or -DVARIANT_CMPXCHG16B"
#endif
    printf("emulation-failure: still running\n");
    return EXIT_FAILURE_CODE;
}
