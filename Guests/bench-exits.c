/*
 * bench-exits-N (Multiboot): N port-I/O exits from user mode, then exit.
 *
 * Boots through the Multiboot header (so QEMU can run it too), drops to
 * CPL 3 with IOPL 3 and writes N times to port 0x80, which no device claims
 * in the kernel, so every write is a full exit to the VMM. Prints nothing.
 * Built as bench-exits-0 and bench-exits-100000: the difference of their
 * run times over 100000 is the cost of one exit. Exit status 33.
 */
#include "rt.h"

#ifndef BENCH_EXITS
#error "build with -DBENCH_EXITS=N"
#endif

static uint8_t user_stack[4096] __attribute__((aligned(16), section(".noinit.user_stack")));

static uint64_t exits(uint64_t n) {
    for (uint64_t i = 0; i < n; i++) outb(0x80, 0);
    return n;
}

int main(void) {
    if (rt_multiboot_magic != MULTIBOOT_BOOTLOADER_MAGIC) return EXIT_FAILURE_CODE;
    if (user_call(exits, BENCH_EXITS, user_stack + sizeof user_stack) != BENCH_EXITS) return EXIT_FAILURE_CODE;
    return EXIT_SUCCESS_CODE;
}
