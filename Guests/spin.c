/*
 * spin: keeps every vCPU busy making exits until the host stops the VM.
 *
 *   spin: <N> CPUs spinning
 *
 * Starts every application processor; then each CPU writes to the POST code
 * port 0x80 in a loop, so each vCPU keeps leaving KVM_RUN. For the tests of
 * pausing, resuming and stopping a running VM: while the VM is paused the
 * port's write count must not move. Never ends by itself.
 */
#include "rt.h"

static volatile uint32_t online = 1;  /* the BSP */

static NORETURN void spin(uint8_t id) {
    for (;;) outb(0x80, id);
}

void ap_main(unsigned apic_id) {
    __atomic_fetch_add(&online, 1, __ATOMIC_SEQ_CST);
    spin((uint8_t)apic_id);
}

int main(void) {
    unsigned n = fwcfg_present() ? fwcfg_u16(FW_CFG_NB_CPUS) : 1;
    if (n > 1) {
        smp_start(n, 10000);
        wait_for_count(&online, n, 10000);
    }
    printf("spin: %u CPUs spinning\n", online);
    spin(0);
}
