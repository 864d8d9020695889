/*
 * fw_cfg over the traditional I/O interface: a 16-bit key written to 0x510
 * selects an item and rewinds it; 0x511 yields its bytes in order. Bulk
 * reads use rep insb, which KVM turns into one exit per page rather than
 * one per byte.
 */
#include "rt.h"

#define FW_CFG_PORT_SEL  0x510
#define FW_CFG_PORT_DATA 0x511

void fwcfg_select(uint16_t key) { outw(FW_CFG_PORT_SEL, key); }
void fwcfg_read(void *buf, size_t n) { insb(FW_CFG_PORT_DATA, buf, n); }

static uint64_t read_le(uint16_t key, unsigned n) {
    uint8_t b[8] = { 0 };
    fwcfg_select(key);
    fwcfg_read(b, n);
    uint64_t v = 0;
    for (unsigned i = n; i--;) v = v << 8 | b[i];
    return v;
}

uint16_t fwcfg_u16(uint16_t key) { return (uint16_t)read_le(key, 2); }
uint32_t fwcfg_u32(uint16_t key) { return (uint32_t)read_le(key, 4); }
uint64_t fwcfg_u64(uint16_t key) { return read_le(key, 8); }

bool fwcfg_present(void) {
    return read_le(FW_CFG_SIGNATURE, 4) == 0x554d4551;  /* "QEMU" */
}

size_t fwcfg_cmdline(char *buf, size_t size) {
    if (!size) return 0;
    uint32_t n = fwcfg_u32(FW_CFG_CMDLINE_SIZE);
    if (n > size - 1) n = (uint32_t)(size - 1);
    fwcfg_select(FW_CFG_CMDLINE_DATA);
    fwcfg_read(buf, n);
    buf[n] = 0;
    return strlen(buf);
}

/* The directory is big-endian: u32 count, then 64-byte entries
 * { u32 size; u16 select; u16 reserved; char name[56]; }. */
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

uint32_t fwcfg_file_count(void) {
    uint8_t b[4];
    fwcfg_select(FW_CFG_FILE_DIR);
    fwcfg_read(b, 4);
    return be32(b);
}

bool fwcfg_find_file(const char *name, uint16_t *key, uint32_t *size) {
    uint8_t e[64];
    uint32_t n = fwcfg_file_count();  /* leaves the item positioned at entry 0 */
    for (uint32_t i = 0; i < n; i++) {
        fwcfg_read(e, sizeof e);
        e[63] = 0;
        if (!strcmp((const char *)e + 8, name)) {
            if (key) *key = (uint16_t)(e[4] << 8 | e[5]);
            if (size) *size = be32(e);
            return true;
        }
    }
    return false;
}
