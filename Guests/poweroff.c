/*
 * poweroff: ACPI-style power-off through port 0x600.
 *
 *   poweroff: writing 0x34 to port 0x600
 *
 * The VMM must then exit with status 0. If the guest keeps running it
 * prints "poweroff: still running" and exits with 0x11 (status 35).
 */
#include "rt.h"

int main(void) {
    printf("poweroff: writing 0x34 to port 0x600\n");
    power_off();
    for (int i = 0; i < 100; i++) inb(0x601);
    printf("poweroff: still running\n");
    return EXIT_FAILURE_CODE;
}
