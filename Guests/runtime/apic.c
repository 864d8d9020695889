/*
 * Interrupt controllers: local APIC, I/O APIC, and the 8259 PICs (only ever
 * masked). Every register access is an exit to the in-kernel irqchip.
 */
#include "rt.h"

extern char rt_spurious_stub[];

volatile bool rt_x2apic;

/* The x2APIC ID register holds the whole 32-bit ID; the xAPIC one, 8 bits. */
uint32_t lapic_id(void) { return rt_x2apic ? lapic_read(LAPIC_ID) : lapic_read(LAPIC_ID) >> 24; }

void lapic_x2apic_mode(void) {
    wrmsr(0x1b, rdmsr(0x1b) | 1u << 11 | 1u << 10);
}

void lapic_use_x2apic(void) {
    lapic_x2apic_mode();
    rt_x2apic = true;
}

void lapic_enable(void) {
    idt_set_gate(RT_VEC_SPURIOUS, rt_spurious_stub, 0);
    lapic_write(LAPIC_SVR, 0x100 | RT_VEC_SPURIOUS);
}

void lapic_send_ipi(uint32_t dest, uint32_t icr) {
    if (rt_x2apic) {  /* one 64-bit ICR, destination in bits 32-63; no delivery status */
        wrmsr(0x830, (uint64_t)dest << 32 | icr);
        return;
    }
    lapic_write(LAPIC_ICR_HI, dest << 24);
    lapic_write(LAPIC_ICR_LO, icr);
    while (lapic_read(LAPIC_ICR_LO) & (1u << 12)) cpu_relax();  /* delivery pending */
}

static uint32_t divide_code(unsigned divide) {
    /* 2, 4, 8, 16 -> 0b0000..0b0011; 32, 64, 128 -> 0b1000..0b1010; 1 -> 0b1011 */
    unsigned log = 0;
    while (divide > 1) { divide >>= 1; log++; }
    if (log == 0) return 0xb;
    log--;
    return (log & 3) | (log & 4) << 1;
}

#define LVT_MASKED   (1u << 16)
#define LVT_PERIODIC (1u << 17)

void lapic_timer_periodic(uint8_t vector, uint32_t count, unsigned divide) {
    lapic_write(LAPIC_TIMER_DIV, divide_code(divide));
    lapic_write(LAPIC_LVT_TIMER, vector | LVT_PERIODIC);
    lapic_write(LAPIC_TIMER_INIT, count);
}

void lapic_timer_oneshot(uint8_t vector, uint32_t count, unsigned divide) {
    lapic_write(LAPIC_TIMER_DIV, divide_code(divide));
    lapic_write(LAPIC_LVT_TIMER, vector);
    lapic_write(LAPIC_TIMER_INIT, count);
}

void lapic_timer_stop(void) {
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
    lapic_write(LAPIC_TIMER_INIT, 0);
}

/* Polls a masked one-shot countdown; at divide 1 the count is in ns under KVM. */
static bool countdown(uint64_t ns, volatile uint32_t *counter, uint32_t n) {
    lapic_write(LAPIC_TIMER_DIV, divide_code(1));
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
    while (ns) {
        uint32_t chunk = ns > 4000000000u ? 4000000000u : (uint32_t)ns;
        lapic_write(LAPIC_TIMER_INIT, chunk);
        while (lapic_read(LAPIC_TIMER_CUR)) {
            if (counter && *counter >= n) { lapic_write(LAPIC_TIMER_INIT, 0); return true; }
            cpu_relax();
        }
        ns -= chunk;
    }
    return counter && *counter >= n;
}

void delay_us(uint64_t us) { countdown(us * 1000, 0, 0); }

uint32_t wait_for_count(volatile uint32_t *counter, uint32_t n, unsigned timeout_ms) {
    if (*counter < n) countdown((uint64_t)timeout_ms * 1000000, counter, n);
    return *counter;
}

/* ---- I/O APIC: index register at +0x00, data window at +0x10. */

static uint32_t ioapic_read(uint32_t reg) {
    mmio_write32(IOAPIC_BASE, reg);
    return mmio_read32(IOAPIC_BASE + 0x10);
}

static void ioapic_write(uint32_t reg, uint32_t v) {
    mmio_write32(IOAPIC_BASE, reg);
    mmio_write32(IOAPIC_BASE + 0x10, v);
}

unsigned ioapic_pin_count(void) { return (ioapic_read(1) >> 16 & 0xff) + 1; }

void ioapic_route(unsigned pin, uint8_t vector, uint8_t dest_apic_id, uint32_t flags) {
    ioapic_write(0x11 + 2 * pin, (uint32_t)dest_apic_id << 24);
    ioapic_write(0x10 + 2 * pin, vector | flags);
}

void ioapic_mask(unsigned pin) { ioapic_write(0x10 + 2 * pin, ioapic_read(0x10 + 2 * pin) | IOAPIC_MASKED); }
void ioapic_unmask(unsigned pin) { ioapic_write(0x10 + 2 * pin, ioapic_read(0x10 + 2 * pin) & ~IOAPIC_MASKED); }

/* ---- 8259: initialize (so that a stray interrupt cannot arrive on an
 * exception vector) to vectors 0x20-0x2f, then mask every line. */
void pic_mask_all(void) {
    outb(0x20, 0x11); outb(0xa0, 0x11);  /* ICW1: edge, cascade, ICW4 follows */
    outb(0x21, 0x20); outb(0xa1, 0x28);  /* ICW2: vector bases */
    outb(0x21, 0x04); outb(0xa1, 0x02);  /* ICW3: slave on IRQ2 */
    outb(0x21, 0x01); outb(0xa1, 0x01);  /* ICW4: 8086 mode */
    outb(0x21, 0xff); outb(0xa1, 0xff);  /* OCW1: mask all */
}
