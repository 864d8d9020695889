/*
 * multiboot-info (Multiboot header): prints what the Multiboot loader passed.
 *
 *   multiboot-info: magic 0x2badb002, info at 0x<addr>, flags 0x<flags>
 *   multiboot-info: mem_lower <n> KiB, mem_upper <n> KiB          (flag 0)
 *   multiboot-info: cmdline "<command line>"                     (flag 2)
 *   multiboot-info: <n> modules                                  (flag 3)
 *   multiboot-info: module <i>: 0x<start>-0x<end> (<n> bytes) "<string>" head "<first 16 bytes>"
 *   multiboot-info: mmap base 0x<16 hex> length 0x<16 hex> type <t>   (flag 6, per entry)
 *   multiboot-info: boot loader "<name>"                         (flag 9)
 *
 * The head is text if printable, else hex bytes. Exit status 33; 35 if EAX
 * did not hold 0x2BADB002 (the runtime's 32-bit entry already stops a wrong
 * magic with status 251) or the guest was entered through the 64-bit entry.
 */
#include "rt.h"

static void print_head(const uint8_t *p, uint32_t n) {
    bool text = true;
    if (n > 16) n = 16;
    for (uint32_t i = 0; i < n; i++) text &= p[i] >= 0x20 && p[i] < 0x7f;
    if (text) {
        printf("\"");
        for (uint32_t i = 0; i < n; i++) printf("%c", p[i]);
        printf("\"");
    } else {
        for (uint32_t i = 0; i < n; i++) printf(i ? " %02x" : "%02x", p[i]);
    }
}

int main(void) {
    if (rt_multiboot_magic != MULTIBOOT_BOOTLOADER_MAGIC) {
        printf("multiboot-info: not entered through Multiboot (magic 0x%x)\n", rt_multiboot_magic);
        return EXIT_FAILURE_CODE;
    }
    const struct multiboot_info *mi = (const void *)(uintptr_t)rt_multiboot_info;
    printf("multiboot-info: magic 0x%x, info at 0x%x, flags 0x%x\n", rt_multiboot_magic, rt_multiboot_info,
           mi->flags);
    if (mi->flags & 1u << 0)
        printf("multiboot-info: mem_lower %u KiB, mem_upper %u KiB\n", mi->mem_lower, mi->mem_upper);
    if (mi->flags & 1u << 2)
        printf("multiboot-info: cmdline \"%s\"\n", (const char *)(uintptr_t)mi->cmdline);
    if (mi->flags & 1u << 3) {
        printf("multiboot-info: %u modules\n", mi->mods_count);
        const struct multiboot_module *m = (const void *)(uintptr_t)mi->mods_addr;
        for (uint32_t i = 0; i < mi->mods_count && i < 64; i++) {
            printf("multiboot-info: module %u: 0x%x-0x%x (%u bytes) \"%s\" head ", i, m[i].mod_start,
                   m[i].mod_end, m[i].mod_end - m[i].mod_start,
                   m[i].string ? (const char *)(uintptr_t)m[i].string : "");
            print_head((const uint8_t *)(uintptr_t)m[i].mod_start, m[i].mod_end - m[i].mod_start);
            printf("\n");
        }
    }
    if (mi->flags & 1u << 6) {
        uintptr_t p = mi->mmap_addr, end = p + mi->mmap_length;
        while (p < end) {
            const struct multiboot_mmap_entry *e = (const void *)p;
            printf("multiboot-info: mmap base 0x%016lx length 0x%016lx type %u\n", e->addr, e->len, e->type);
            p += e->size + 4;
        }
    }
    if (mi->flags & 1u << 9)
        printf("multiboot-info: boot loader \"%s\"\n", (const char *)(uintptr_t)mi->boot_loader_name);
    return EXIT_SUCCESS_CODE;
}
