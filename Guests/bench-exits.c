/*
 * bench-exits-N (Multiboot): N port-I/O exits from user mode, then exit.
 *
 * Boots through the Multiboot header (so QEMU can run it too), drops to
 * CPL 3 and writes N times to port 0x80, which no device claims in the
 * kernel, so every write is a full exit to the VMM. The loop is timed with
 * the TSC from inside the guest (rdtsc runs natively at CPL 3, also on PVM),
 * so VMM start-up and teardown do not blur the figure; it prints
 *     bench-exits: N exits in C TSC cycles
 * and the harness converts cycles with the host's TSC rate. Built as
 * bench-exits-0 and bench-exits-100000. Exit status 33.
 */
#include "rt.h"

#ifndef BENCH_EXITS
#error "build with -DBENCH_EXITS=N"
#endif

static uint8_t user_stack[4096] __attribute__((aligned(16), section(".noinit.user_stack")));

static uint64_t cycles;

static uint64_t exits(uint64_t n) {
    uint64_t start = rdtsc();
    for (uint64_t i = 0; i < n; i++) outb(0x80, 0);
    cycles = rdtsc() - start;
    return n;
}

int main(void) {
    if (rt_multiboot_magic != MULTIBOOT_BOOTLOADER_MAGIC) return EXIT_FAILURE_CODE;
    if (user_call(exits, BENCH_EXITS, user_stack + sizeof user_stack) != BENCH_EXITS) return EXIT_FAILURE_CODE;
    printf("bench-exits: %lu exits in %lu TSC cycles\n", (unsigned long)BENCH_EXITS, (unsigned long)cycles);
    return EXIT_SUCCESS_CODE;
}
