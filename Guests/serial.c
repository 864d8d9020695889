/*
 * serial: the COM1 16550A: interrupt-driven receive, the THR-empty
 * interrupt, then the registers one by one.
 *
 *   serial: waiting for input
 *   got: ping
 *   serial: <k> receive interrupts
 *   serial: THR-empty interrupt: ok
 *   serial: scratch register: ok
 *   serial: divisor latch: ok
 *   serial: line status when idle (THRE|TEMT): ok
 *   serial: loopback data: ok
 *   serial: loopback modem status: ok
 *
 * A failed check prints "FAILED (got 0x.., want 0x..)" instead of "ok".
 * The host writes a line (e.g. "ping\n") to the VMM's standard input, at any
 * time: the receive test comes first, and nothing reads the UART before its
 * interrupt is enabled, so early input waits in the receiver (enabling the
 * interrupt with data ready raises it at once). The UART interrupt (IRQ 4,
 * IOAPIC pin 4, edge) wakes the guest from HLT. Exit status 33 if every
 * check passed, 35 otherwise (including "serial: timed out waiting for
 * input" after 30 s).
 */
#include "rt.h"

#define RBR 0
#define THR 0
#define DLL 0
#define IER 1
#define DLM 1
#define IIR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define SCR 7

#define VEC_UART  0x34
#define VEC_WATCHDOG 0x3f

static int failures;

static void check(const char *what, uint64_t got, uint64_t want) {
    if (got == want) {
        printf("serial: %s: ok\n", what);
    } else {
        printf("serial: %s: FAILED (got 0x%lx, want 0x%lx)\n", what, got, want);
        failures++;
    }
}

static uint8_t reg(unsigned r) { return inb(COM1 + r); }
static void set(unsigned r, uint8_t v) { outb(COM1 + r, v); }

/* Discards received bytes (bounded: an absent UART reads as all ones). */
static void drain(void) {
    for (int i = 0; i < 64 && (reg(LSR) & 1); i++) reg(RBR);
}

static volatile uint32_t thre_irqs, rx_irqs, timed_out, line_done;
static char line[64];
static volatile unsigned line_len;

static void uart_irq(struct int_frame *f) {
    (void)f;
    uint8_t iir = reg(IIR);
    if ((iir & 0x0f) == 0x02) thre_irqs++;           /* reading IIR cleared it */
    if ((iir & 0x0f) == 0x04 || (iir & 0x0f) == 0x0c) rx_irqs++;
    for (int i = 0; i < 64 && (reg(LSR) & 1); i++) {
        char c = (char)reg(RBR);
        if (c == '\n' || c == '\r') { if (line_len) line_done = 1; }
        else if (line_len < sizeof line - 1) line[line_len++] = c;
    }
    lapic_eoi();
}

static void watchdog(struct int_frame *f) {
    (void)f;
    timed_out = 1;
    lapic_eoi();
}

/* Sleeps until *flag is set or the watchdog fires. */
static void wait_for(volatile uint32_t *flag) {
    for (;;) {
        cli();
        if (*flag || timed_out) break;
        sti_hlt();
    }
}

int main(void) {
    /* Interrupts: UART -> IOAPIC pin 4 -> this CPU. */
    pic_mask_all();
    lapic_enable();
    irq_register(VEC_UART, uart_irq);
    irq_register(VEC_WATCHDOG, watchdog);
    ioapic_route(4, VEC_UART, (uint8_t)lapic_id(), 0);
    set(MCR, 0x0b);  /* DTR, RTS, and OUT2 (gates the IRQ line on a PC) */

    /* Receive: sleep until the host has sent a line. */
    printf("serial: waiting for input\n");
    lapic_timer_oneshot(VEC_WATCHDOG, 30000000000ull / 16, 16);  /* 30 s */
    set(IER, 0x01);
    wait_for(&line_done);
    set(IER, 0x00);
    lapic_timer_stop();
    if (timed_out) {
        printf("serial: timed out waiting for input\n");
        return EXIT_FAILURE_CODE;
    }
    line[line_len] = 0;
    printf("got: %s\n", line);
    printf("serial: %u receive interrupts\n", rx_irqs);
    if (!rx_irqs) failures++;

    /* THR empty: enabling the interrupt while THR is empty raises it. */
    lapic_timer_oneshot(VEC_WATCHDOG, 1000000000u / 16, 16);  /* 1 s */
    set(IER, 0x02);
    wait_for(&thre_irqs);
    set(IER, 0x00);
    lapic_timer_stop();
    check("THR-empty interrupt", thre_irqs ? 1 : 0, 1);

    /* Scratch register. */
    set(SCR, 0x5a);
    unsigned a = reg(SCR);
    set(SCR, 0xa5);
    check("scratch register", a << 8 | reg(SCR), 0x5aa5);

    /* Divisor latch: write 12 (9600 baud), read back, then 1 (115200), 8N1. */
    set(LCR, 0x83);
    set(DLL, 0x0c);
    set(DLM, 0x00);
    unsigned div = reg(DLM) << 8 | reg(DLL);
    set(DLL, 0x01);
    set(LCR, 0x03);
    check("divisor latch", div << 8 | reg(LCR), 0x000c03);

    check("line status when idle (THRE|TEMT)", reg(LSR) & 0x60, 0x60);

    /* Loopback: nothing may be printed while it is on. */
    set(MCR, 0x10);
    drain();
    const char probe[] = "Lb!";
    unsigned bad = 0, got = 0, want = 0;
    for (unsigned i = 0; i < 3; i++) {
        set(THR, (uint8_t)probe[i]);
        int polls = 0;
        while (!(reg(LSR) & 1) && ++polls < 100) cpu_relax();
        uint8_t c = reg(RBR);
        if (c != (uint8_t)probe[i] && !bad) { bad = 1; got = c; want = (uint8_t)probe[i]; }
    }
    /* MCR DTR, RTS, OUT1, OUT2 come back as MSR DSR, CTS, RI, DCD. */
    static const uint8_t mcr[5] = { 0x01, 0x02, 0x04, 0x08, 0x0f };
    static const uint8_t msr[5] = { 0x20, 0x10, 0x40, 0x80, 0xf0 };
    uint64_t msr_got = 0, msr_want = 0;
    for (unsigned i = 0; i < 5; i++) {
        set(MCR, 0x10 | mcr[i]);
        msr_got = msr_got << 8 | (reg(MSR) & 0xf0);
        msr_want = msr_want << 8 | msr[i];
    }
    set(MCR, 0x0b);
    drain();
    check("loopback data", got, want);
    check("loopback modem status", msr_got, msr_want);
    return failures ? EXIT_FAILURE_CODE : EXIT_SUCCESS_CODE;
}
