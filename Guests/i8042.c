/*
 * i8042: the keyboard controller's reset line.
 *
 *   i8042: status 0x<status register>
 *   i8042: self-test 0x55
 *   i8042: pulsing reset (0xfe to port 0x64)
 *
 * Then the VMM must end with status 4 (reset requested). If the guest keeps
 * running it prints "i8042: still running after reset" and exits with 0x11
 * (status 35); a self-test result other than 0x55 exits with 0x12 (37).
 */
#include "rt.h"

int main(void) {
    uint8_t status = inb(0x64);
    printf("i8042: status 0x%02x\n", status);
    for (int i = 0; i < 16 && (inb(0x64) & 1); i++) inb(0x60);  /* drain the output buffer */
    outb(0x64, 0xaa);
    int polls = 0;
    while (!(inb(0x64) & 1) && ++polls < 1000) cpu_relax();
    uint8_t result = inb(0x60);
    printf("i8042: self-test 0x%02x\n", result);
    if (result != 0x55) return 0x12;
    printf("i8042: pulsing reset (0xfe to port 0x64)\n");
    reset_via_i8042();
    for (int i = 0; i < 100; i++) inb(0x64);  /* give an asynchronous reset time to land */
    printf("i8042: still running after reset\n");
    return EXIT_FAILURE_CODE;
}
