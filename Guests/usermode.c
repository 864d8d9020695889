/*
 * usermode: CPL 3 with port I/O and interrupts.
 *
 *   usermode: hello from CPL 3 (RFLAGS.IOPL <n>)
 *   usermode: 100000000 iterations, result 0x<64-bit>, <n> Mcycles
 *   usermode: back at CPL 0, result ok, <t> timer ticks in user mode
 *
 * The user function prints through COM1 itself, then runs 10^8 iterations
 * of arithmetic natively while the LAPIC timer (1 ms, periodic) interrupts
 * it; those interrupts run at CPL 0 on the TSS's RSP0 stack and return to
 * user mode. IOPL shows 3 on hardware and 0 on PVM, which does not keep
 * the guest's IOPL in user mode (the runtime's TSS I/O bitmap allows the
 * ports there). Exit status 33; 35 if the result is wrong or no tick was
 * taken in user mode.
 */
#include "rt.h"

#define N 100000000ull
#define VEC_TICK 0x30

static uint8_t user_stack[16384] __attribute__((aligned(16), section(".noinit.user_stack")));
static volatile uint32_t ticks, user_ticks;

static void on_tick(struct int_frame *f) {
    ticks++;
    if ((f->cs & 3) == 3) user_ticks++;
    lapic_eoi();
}

static uint64_t user_main(uint64_t n) {
    printf("usermode: hello from CPL %u (RFLAGS.IOPL %u)\n", current_cpl(), current_iopl());
    uint64_t t0 = rdtsc(), sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        sum += i * i;
        __asm__("" : "+r"(sum));  /* keep the loop: no closed form */
    }
    printf("usermode: %lu iterations, result 0x%016lx, %lu Mcycles\n", n, sum, (rdtsc() - t0) / 1000000);
    return sum;
}

/* sum of i^2 for i < n, mod 2^64: (n-1) n (2n-1) / 6, dividing before multiplying. */
static uint64_t expected(uint64_t n) {
    uint64_t f[3] = { n - 1, n, 2 * n - 1 };
    for (int i = 0; i < 3; i++) if (f[i] % 2 == 0) { f[i] /= 2; break; }
    for (int i = 0; i < 3; i++) if (f[i] % 3 == 0) { f[i] /= 3; break; }
    return f[0] * f[1] * f[2];
}

int main(void) {
    pic_mask_all();
    lapic_enable();
    irq_register(VEC_TICK, on_tick);
    lapic_timer_periodic(VEC_TICK, 62500, 16);  /* 1 ms */
    sti();
    uint64_t r = user_call(user_main, N, user_stack + sizeof user_stack);
    cli();
    lapic_timer_stop();
    bool ok = r == expected(N);
    printf("usermode: back at CPL %u, result %s, %u timer ticks in user mode\n", current_cpl(),
           ok ? "ok" : "WRONG", user_ticks);
    return ok && user_ticks > 0 && current_cpl() == 0 ? EXIT_SUCCESS_CODE : EXIT_FAILURE_CODE;
}
