/*
 * Application-processor bring-up (the real-mode side is runtime/ap.S).
 */
#include "rt.h"

volatile uint32_t smp_cpus_online = 1;

extern char rt_ap_trampoline[], rt_ap_trampoline_end[];
extern char rt_ap_gdt_ptr[], rt_ap_cr3[], rt_ap_stack_base[];
extern char rt_gdt_ptr[], __image_end[];

/* Address of a trampoline variable in the copy at RT_AP_TRAMPOLINE. */
#define AT(sym) ((void *)(uintptr_t)(RT_AP_TRAMPOLINE + ((sym) - rt_ap_trampoline)))

__attribute__((weak)) void ap_main(unsigned apic_id) { (void)apic_id; }

void rt_ap_entry(void);
void rt_ap_entry(void) {
    if (rt_x2apic) lapic_x2apic_mode();
    lapic_enable();
    __atomic_fetch_add(&smp_cpus_online, 1, __ATOMIC_SEQ_CST);
    ap_main(lapic_id());
}

/* Copies the trampoline and fills in its data words, once: a second copy
 * would reset the stack ticket and hand a running AP's stack to the next. */
static void prepare_trampoline(void) {
    static bool prepared;
    if (prepared) return;
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    memcpy((void *)RT_AP_TRAMPOLINE, rt_ap_trampoline, (size_t)(rt_ap_trampoline_end - rt_ap_trampoline));
    memcpy(AT(rt_ap_gdt_ptr), rt_gdt_ptr, 6);  /* limit and 32-bit base */
    *(uint64_t *)AT(rt_ap_cr3) = cr3;
    *(uint64_t *)AT(rt_ap_stack_base) = (uint64_t)__image_end;
    lapic_enable();
    prepared = true;
}

void smp_start_ap(unsigned apic_id) {
    prepare_trampoline();
    lapic_send_ipi(apic_id, ICR_INIT | ICR_ASSERT);
    smp_send_startup(apic_id);
}

void smp_send_startup(unsigned apic_id) {
    lapic_send_ipi(apic_id, ICR_STARTUP | ICR_ASSERT | RT_AP_TRAMPOLINE >> 12);
}

unsigned smp_start(unsigned expected, unsigned timeout_ms) {
    if (expected <= 1) return smp_cpus_online;
    prepare_trampoline();
    /* Broadcast to all but self: KVM latches INIT and STARTUP in order, so
     * the PC's 10 ms INIT delay is not needed; a second STARTUP IPI (as the
     * MP specification asks) goes only if some AP has not arrived. */
    lapic_send_ipi(0, ICR_INIT | ICR_ASSERT | ICR_ALL_BUT_SELF);
    lapic_send_ipi(0, ICR_STARTUP | ICR_ASSERT | ICR_ALL_BUT_SELF | RT_AP_TRAMPOLINE >> 12);
    if (wait_for_count(&smp_cpus_online, expected, 10) < expected)
        lapic_send_ipi(0, ICR_STARTUP | ICR_ASSERT | ICR_ALL_BUT_SELF | RT_AP_TRAMPOLINE >> 12);
    return wait_for_count(&smp_cpus_online, expected, timeout_ms);
}
