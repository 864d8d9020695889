/*
 * irq-latency: the target of `swiftlet-bench interrupts` (issue 3's
 * interrupt benchmark). The host posts vector 0x40 to APIC ID 0 (this CPU)
 * and timestamps the handler's write to port 0x80. No other CPU is started:
 * with --cpus N the other N-1 vCPUs stay in wait-for-SIPI.
 *
 * Command line (fw_cfg), one of:
 *   halt   the CPU waits in `sti; hlt`; the handler writes port 0x80 first
 *          (the host's timestamp), then sends its EOI, and the CPU halts
 *          again. Prints "irq-latency: ready (halt)".
 *   user   the CPU spins at CPL 3 (user_call) with interrupts enabled; the
 *          handler sends its EOI first, then writes port 0x80, so the host
 *          posts the next interrupt only once this one is retired. Prints
 *          "irq-latency: ready (user)".
 * Anything else prints "irq-latency: unknown mode" and exits with status 35.
 * Neither mode ends by itself: the host stops the VM.
 */
#include "rt.h"

#define VEC_BENCH 0x40

static uint8_t user_stack[16384] __attribute__((aligned(16), section(".noinit.user_stack")));
static volatile uint32_t handled;

static void on_halt_irq(struct int_frame *f) {
    (void)f;
    outb(0x80, (uint8_t)++handled);
    lapic_eoi();
}

static void on_user_irq(struct int_frame *f) {
    (void)f;
    lapic_eoi();
    outb(0x80, (uint8_t)++handled);
}

static uint64_t user_spin(uint64_t arg) {
    volatile uint64_t n = arg;
    for (;;) n++;
    return n;
}

int main(void) {
    char cmdline[64];
    fwcfg_cmdline(cmdline, sizeof cmdline);
    bool user = strcmp(cmdline, "user") == 0;
    if (!user && strcmp(cmdline, "halt") != 0) {
        printf("irq-latency: unknown mode \"%s\" (halt or user)\n", cmdline);
        return EXIT_FAILURE_CODE;
    }
    pic_mask_all();
    lapic_enable();
    irq_register(VEC_BENCH, user ? on_user_irq : on_halt_irq);
    printf("irq-latency: ready (%s)\n", user ? "user" : "halt");
    if (user) {
        sti();
        user_call(user_spin, 0, user_stack + sizeof user_stack);
    }
    for (;;) sti_hlt();
}
