/*
 * smp: starts every application processor.
 *
 *   smp: starting <N> CPUs (BSP APIC ID 0)      ("smp: 1 CPU" when N = 1)
 *   smp: AP with APIC ID <id> online            (N-1 lines, in any order)
 *   smp: <N> of <N> CPUs online
 *
 * N comes from fw_cfg key 0x05 (1 without fw_cfg). Exit status 33, or 35
 * if not all CPUs reported within 10 s.
 */
#include "rt.h"

static volatile uint32_t reported = 1;  /* the BSP */

void ap_main(unsigned apic_id) {
    printf("smp: AP with APIC ID %u online\n", apic_id);
    __atomic_fetch_add(&reported, 1, __ATOMIC_SEQ_CST);
}

int main(void) {
    unsigned n = fwcfg_present() ? fwcfg_u16(FW_CFG_NB_CPUS) : 1;
    if (n == 0) n = 1;
    if (n == 1) {
        printf("smp: 1 CPU\n");
    } else {
        printf("smp: starting %u CPUs (BSP APIC ID %u)\n", n, lapic_id());
        smp_start(n, 10000);
        wait_for_count(&reported, n, 10000);
    }
    printf("smp: %u of %u CPUs online\n", reported, n);
    return reported == n ? EXIT_SUCCESS_CODE : EXIT_FAILURE_CODE;
}
