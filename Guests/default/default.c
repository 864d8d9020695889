/*
 * The default guest, embedded in the swiftlet binary and booted by
 * `swiftlet run` when no kernel is given (direct 64-bit entry). It says
 * what machine it got, through fw_cfg, and powers off (status 0):
 *
 *   Swiftlet default guest: 2 vCPUs, 128 MiB RAM
 *   command line: <command line>            (only if one was given)
 *
 * Embedded by `Guests/build --embed-default`; keep it small.
 */
#include "rt.h"

int main(void) {
    if (fwcfg_present()) {
        unsigned cpus = fwcfg_u16(FW_CFG_NB_CPUS);
        printf("Swiftlet default guest: %u vCPU%s, %lu MiB RAM\n", cpus, cpus == 1 ? "" : "s",
               fwcfg_u64(FW_CFG_RAM_SIZE) >> 20);
        uint32_t len = fwcfg_u32(FW_CFG_CMDLINE_SIZE);  /* includes the NUL */
        if (len > 1) {
            char buf[257];
            printf("command line: ");
            fwcfg_select(FW_CFG_CMDLINE_DATA);
            for (uint32_t done = 0; done < len; done += sizeof buf - 1) {
                uint32_t n = len - done < sizeof buf - 1 ? len - done : sizeof buf - 1;
                fwcfg_read(buf, n);
                buf[n] = 0;
                printf("%s", buf);
            }
            printf("\n");
        }
    } else {
        printf("Swiftlet default guest (no fw_cfg)\n");
    }
    power_off();
    return EXIT_FAILURE_CODE;  /* only if the power-off request was ignored */
}
