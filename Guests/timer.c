/*
 * timer: interrupts from the in-kernel LAPIC timer and the PIT, with HLT
 * in between.
 *
 *   timer: lapic periodic: 10 ticks
 *   timer: lapic one-shot: 1 tick, current count 0
 *   timer: pit: 5 ticks on IOAPIC pin <0 or 2>
 *
 * The LAPIC timer runs at 1 ms (KVM's 1 GHz APIC bus, divide 16, count
 * 62500). The PIT (channel 0, mode 2, 100 Hz) is routed through the IOAPIC:
 * KVM's default routing sends its GSI 0 to IOAPIC pin 0, while QEMU (and
 * firmware-visible MADT overrides on PCs) use pin 2, so both pins are
 * programmed, each with its own vector, and the line says which one fired.
 * Without a PIT (ports 0x40-0x43 unclaimed, the counter reads as 0xffff)
 * the line is "timer: pit: not present" and that is not a failure.
 * Exit status 33; 35 if something did not tick within 2 s.
 */
#include "rt.h"

#define VEC_PERIODIC 0x30
#define VEC_ONESHOT  0x31
#define VEC_PIT_PIN0 0x40
#define VEC_PIT_PIN2 0x42
#define VEC_WATCHDOG 0x3f

static volatile uint32_t periodic_ticks, oneshot_ticks, pit_pin0, pit_pin2, pit_ticks;

static void on_periodic(struct int_frame *f) { (void)f; periodic_ticks++; lapic_eoi(); }
static void on_oneshot(struct int_frame *f) { (void)f; oneshot_ticks++; lapic_eoi(); }
static void on_pit0(struct int_frame *f) { (void)f; pit_pin0++; pit_ticks++; lapic_eoi(); }
static void on_pit2(struct int_frame *f) { (void)f; pit_pin2++; pit_ticks++; lapic_eoi(); }

static volatile uint32_t timed_out;
static void on_watchdog(struct int_frame *f) { (void)f; timed_out = 1; lapic_eoi(); }

static bool wait_count(volatile uint32_t *count, uint32_t n) {
    for (;;) {
        cli();
        if (*count >= n || timed_out) break;
        sti_hlt();
    }
    return *count >= n;
}

int main(void) {
    int failures = 0;
    pic_mask_all();
    lapic_enable();
    irq_register(VEC_PERIODIC, on_periodic);
    irq_register(VEC_ONESHOT, on_oneshot);

    lapic_timer_periodic(VEC_PERIODIC, 62500, 16);
    bool ok = wait_count(&periodic_ticks, 10);
    lapic_timer_stop();
    printf("timer: lapic periodic: %u ticks\n", periodic_ticks);
    failures += !ok;

    /* One-shot, with the PIT's watchdog role played by a bounded wait. */
    lapic_timer_oneshot(VEC_ONESHOT, 62500, 16);
    for (int i = 0; i < 100000 && !oneshot_ticks; i++) { cli(); if (oneshot_ticks) break; sti_hlt(); }
    cli();
    uint32_t cur = lapic_read(LAPIC_TIMER_CUR);
    printf("timer: lapic one-shot: %u tick%s, current count %u\n", oneshot_ticks, oneshot_ticks == 1 ? "" : "s", cur);
    failures += oneshot_ticks != 1 || cur != 0;

    /* PIT channel 0, mode 2 (rate generator), 1193182 Hz / 11932 = 100 Hz. */
    outb(0x43, 0x34);
    outb(0x40, 11932 & 0xff);
    outb(0x40, 11932 >> 8);
    outb(0x43, 0x00);  /* latch channel 0 */
    uint16_t count = (uint16_t)(inb(0x40) | inb(0x40) << 8);
    if (count == 0xffff) {
        printf("timer: pit: not present\n");
    } else {
        irq_register(VEC_PIT_PIN0, on_pit0);
        irq_register(VEC_PIT_PIN2, on_pit2);
        irq_register(VEC_WATCHDOG, on_watchdog);
        ioapic_route(0, VEC_PIT_PIN0, (uint8_t)lapic_id(), 0);
        ioapic_route(2, VEC_PIT_PIN2, (uint8_t)lapic_id(), 0);
        lapic_timer_oneshot(VEC_WATCHDOG, 2000000000u / 16, 16);  /* 2 s */
        ok = wait_count(&pit_ticks, 5);
        lapic_timer_stop();
        ioapic_mask(0);
        ioapic_mask(2);
        outb(0x43, 0x30);  /* mode 0, no count written: the counter stops */
        printf("timer: pit: %u ticks on IOAPIC pin %s\n", pit_ticks,
               pit_pin0 && pit_pin2 ? "0 and 2" : pit_pin2 ? "2" : pit_pin0 ? "0" : "none");
        failures += !ok;
    }
    return failures ? EXIT_FAILURE_CODE : EXIT_SUCCESS_CODE;
}
