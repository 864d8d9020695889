/*
 * reset: reset request through the power-control reset port.
 *
 *   reset: writing 1 to port 0x602
 *
 * The VMM must then exit with status 4. If the guest keeps running it
 * prints "reset: still running" and exits with 0x11 (status 35).
 */
#include "rt.h"

int main(void) {
    printf("reset: writing 1 to port 0x602\n");
    reset_via_port();
    for (int i = 0; i < 100; i++) inb(0x601);
    printf("reset: still running\n");
    return EXIT_FAILURE_CODE;
}
