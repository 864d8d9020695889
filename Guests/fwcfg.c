/*
 * fwcfg: reads every fw_cfg item of docs/boot-protocol.md and prints it.
 *
 *   fwcfg: signature "QEMU", features 0x1
 *   fwcfg: ram 128 MiB
 *   fwcfg: cpus 2, max cpus 2
 *   fwcfg: cmdline "<command line>"
 *   fwcfg: initrd <n> bytes, sum 0x<sum of bytes mod 2^32, 8 hex digits>, head "<first 16 bytes>"
 *   fwcfg: <n> files
 *   fwcfg: file "<name>" size <n> select 0x<key>       (one line per file)
 *
 * The head is printed as text if all of its bytes are printable ASCII,
 * otherwise as hex bytes (head 7f 45 4c 46 ...). The initrd is read with
 * rep insb and summed in user mode, where the loop runs natively.
 * Exit status 33, or 35 without a "QEMU" signature.
 */
#include "rt.h"

static uint8_t user_stack[8192] __attribute__((aligned(16), section(".noinit.user_stack")));
static uint8_t chunk[4096] __attribute__((section(".noinit.chunk")));

static uint64_t sum_initrd(uint64_t size) {
    uint32_t sum = 0;
    fwcfg_select(FW_CFG_INITRD_DATA);
    for (uint64_t done = 0; done < size;) {
        size_t n = size - done < sizeof chunk ? (size_t)(size - done) : sizeof chunk;
        fwcfg_read(chunk, n);
        for (size_t i = 0; i < n; i++) sum += chunk[i];
        done += n;
    }
    return sum;
}

int main(void) {
    char sig[5] = { 0 };
    fwcfg_select(FW_CFG_SIGNATURE);
    fwcfg_read(sig, 4);
    if (!fwcfg_present()) {
        printf("fwcfg: no fw_cfg (signature bytes %02x %02x %02x %02x)\n", sig[0] & 0xff, sig[1] & 0xff,
               sig[2] & 0xff, sig[3] & 0xff);
        return EXIT_FAILURE_CODE;
    }
    printf("fwcfg: signature \"%s\", features 0x%x\n", sig, fwcfg_u32(FW_CFG_ID));
    printf("fwcfg: ram %lu MiB\n", fwcfg_u64(FW_CFG_RAM_SIZE) >> 20);
    printf("fwcfg: cpus %u, max cpus %u\n", fwcfg_u16(FW_CFG_NB_CPUS), fwcfg_u16(FW_CFG_MAX_CPUS));

    /* The command line may be up to 64 KiB: stream it. */
    uint32_t len = fwcfg_u32(FW_CFG_CMDLINE_SIZE);
    printf("fwcfg: cmdline \"");
    fwcfg_select(FW_CFG_CMDLINE_DATA);
    for (uint32_t done = 0; done < len;) {
        uint32_t n = len - done < sizeof chunk - 1 ? len - done : (uint32_t)sizeof chunk - 1;
        fwcfg_read(chunk, n);
        chunk[n] = 0;
        printf("%s", (char *)chunk);  /* stops at the terminating NUL */
        done += n;
    }
    printf("\"\n");

    uint32_t size = fwcfg_u32(FW_CFG_INITRD_SIZE);
    uint32_t sum = (uint32_t)user_call(sum_initrd, size, user_stack + sizeof user_stack);
    uint8_t head[16];
    unsigned n = size < 16 ? size : 16;
    bool text = true;
    fwcfg_select(FW_CFG_INITRD_DATA);
    fwcfg_read(head, n);
    for (unsigned i = 0; i < n; i++) text &= head[i] >= 0x20 && head[i] < 0x7f;
    printf("fwcfg: initrd %u bytes, sum 0x%08x, head ", size, sum);
    if (text) {
        printf("\"");
        for (unsigned i = 0; i < n; i++) printf("%c", head[i]);
        printf("\"\n");
    } else {
        for (unsigned i = 0; i < n; i++) printf(i ? " %02x" : "%02x", head[i]);
        printf("\n");
    }

    uint32_t files = fwcfg_file_count();  /* leaves the directory positioned at entry 0 */
    printf("fwcfg: %u files\n", files);
    for (uint32_t i = 0; i < files && i < 1024; i++) {
        uint8_t e[64];
        fwcfg_read(e, sizeof e);
        e[63] = 0;
        printf("fwcfg: file \"%s\" size %u select 0x%x\n", (char *)e + 8,
               (unsigned)e[0] << 24 | e[1] << 16 | e[2] << 8 | e[3], e[4] << 8 | e[5]);
    }
    return EXIT_SUCCESS_CODE;
}
