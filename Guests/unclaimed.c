/*
 * unclaimed: accesses nobody handles read as all ones; writes are ignored.
 *
 *   unclaimed: port 0x2f8 inb 0xff inw 0xffff inl 0xffffffff
 *   unclaimed: mmio 0xd0001000 read32 0xffffffff
 *   unclaimed: after writes: port 0x2f8 inb 0xff inl 0xffffffff, mmio 0xffffffff
 *   unclaimed: ok
 *
 * Exit status 33, or 35 ("unclaimed: FAILED") if any read is not all ones.
 */
#include "rt.h"

#define PORT 0x2f8          /* COM2: not part of the machine */
#define MMIO 0xd0001000ul   /* in the MMIO hole, nothing there */

int main(void) {
    uint8_t b = inb(PORT);
    uint16_t w = inw(PORT);
    uint32_t l = inl(PORT);
    uint32_t m = mmio_read32(MMIO);
    printf("unclaimed: port 0x%x inb 0x%02x inw 0x%04x inl 0x%08x\n", PORT, b, w, l);
    printf("unclaimed: mmio 0x%lx read32 0x%08x\n", MMIO, m);
    outb(PORT, 0x55);
    outw(PORT, 0x1234);
    outl(PORT, 0x12345678);
    mmio_write32(MMIO, 0xdeadbeef);
    uint8_t b2 = inb(PORT);
    uint32_t l2 = inl(PORT), m2 = mmio_read32(MMIO);
    printf("unclaimed: after writes: port 0x%x inb 0x%02x inl 0x%08x, mmio 0x%08x\n", PORT, b2, l2, m2);
    bool ok = b == 0xff && w == 0xffff && l == 0xffffffff && m == 0xffffffff && b2 == 0xff &&
              l2 == 0xffffffff && m2 == 0xffffffff;
    printf("unclaimed: %s\n", ok ? "ok" : "FAILED");
    return ok ? EXIT_SUCCESS_CODE : EXIT_FAILURE_CODE;
}
