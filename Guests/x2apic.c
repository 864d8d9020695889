/*
 * x2apic: a CPU whose APIC ID does not fit 8 bits takes an interrupt from
 * the host. The BSP switches to x2APIC mode, starts only the last CPU
 * (APIC ID N-1, N from fw_cfg key 0x05) with INIT/SIPI addressed by its
 * 32-bit ID, and that CPU (in x2APIC mode too) waits in `sti; hlt` for
 * vector 0x40, which the host sends to its APIC ID as an MSI:
 *
 *   x2apic: BSP in x2APIC mode, starting APIC ID <N-1>
 *   x2apic: CPU <id> ready
 *   x2apic: CPU <id> got vector 0x40 from the host
 *
 * Exit status 33; 35 if the CPU did not come up, or the vector did not
 * arrive, within 30 s (each).
 */
#include "rt.h"

#define VEC_HOST 0x40

static volatile uint32_t ready, got;
static volatile uint32_t target_id;

static void on_host_irq(struct int_frame *f) {
    (void)f;
    __atomic_fetch_add(&got, 1, __ATOMIC_SEQ_CST);
    lapic_eoi();
}

void ap_main(unsigned apic_id) {
    target_id = apic_id;
    printf("x2apic: CPU %u ready\n", apic_id);
    __atomic_store_n(&ready, 1, __ATOMIC_SEQ_CST);
    for (;;) sti_hlt();
}

int main(void) {
    unsigned n = fwcfg_present() ? fwcfg_u16(FW_CFG_NB_CPUS) : 1;
    if (n < 2) {
        printf("x2apic: needs at least 2 CPUs\n");
        return EXIT_FAILURE_CODE;
    }
    pic_mask_all();
    lapic_use_x2apic();
    lapic_enable();
    irq_register(VEC_HOST, on_host_irq);
    printf("x2apic: BSP in x2APIC mode, starting APIC ID %u\n", n - 1);
    smp_start_ap(n - 1);
    if (wait_for_count(&ready, 1, 30000) < 1) {
        printf("x2apic: APIC ID %u did not come up\n", n - 1);
        return EXIT_FAILURE_CODE;
    }
    if (wait_for_count(&got, 1, 30000) < 1) {
        printf("x2apic: CPU %u got no interrupt from the host\n", target_id);
        return EXIT_FAILURE_CODE;
    }
    printf("x2apic: CPU %u got vector 0x%x from the host\n", target_id, VEC_HOST);
    return EXIT_SUCCESS_CODE;
}
