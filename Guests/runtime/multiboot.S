/*
 * Multiboot v1 header and 32-bit entry. Linking this file makes a guest
 * bootable by QEMU's -kernel and Swiftlet's Multiboot loader -- and, per
 * docs/boot-protocol.md, forces Swiftlet to boot it that way, so only guests
 * that need it link it.
 *
 * The header sets flag 16 (the "a.out kludge"): its address fields describe
 * the image, so loaders do not need to read ELF64 program headers (QEMU
 * refuses ELF64 Multiboot kernels otherwise). link.ld makes the file a
 * contiguous copy of memory from __image_start, as those fields require.
 *
 * The entry switches to long mode using page tables that are initialized
 * data in this image (identity map of 4 GiB with 2 MiB pages, user-
 * accessible, like the boot protocol's): nothing is built at run time, where
 * every instruction is emulated, and nothing in low memory is touched, so
 * the Multiboot information structure stays intact wherever the loader put
 * it. Then it joins the direct entry at rt_start64.
 */
#include "rt_asm.h"

#define MB_FLAGS    0x00010002          /* memory information wanted; address fields valid */

        .section .multiboot, "a"
        .balign 4
multiboot_header:
        .long   MULTIBOOT_MAGIC
        .long   MB_FLAGS
        .long   -(MULTIBOOT_MAGIC + MB_FLAGS)
        .long   multiboot_header        /* header_addr */
        .long   __image_start           /* load_addr */
        .long   __data_end              /* load_end_addr */
        .long   __image_end             /* bss_end_addr */
        .long   rt_multiboot_entry      /* entry_addr */

        .section .text.rt_multiboot_entry, "ax"
        .code32
        .globl  rt_multiboot_entry
rt_multiboot_entry:
        cmp     $MULTIBOOT_BOOTLOADER_MAGIC, %eax
        jne     bad_magic
        mov     %eax, rt_multiboot_magic
        mov     %ebx, rt_multiboot_info
        lgdt    rt_gdt_ptr              /* limit and low 32 bits of the base */
        mov     $rt_mb_pml4, %eax
        mov     %eax, %cr3
        mov     $0x620, %eax            /* PAE | OSFXSR | OSXMMEXCPT, as the direct entry */
        mov     %eax, %cr4
        mov     $0xc0000080, %ecx       /* EFER.LME */
        rdmsr
        or      $0x100, %eax
        wrmsr
        mov     $0x80010033, %eax       /* PG | WP | NE | ET | MP | PE */
        mov     %eax, %cr0
        ljmp    $KERNEL_CS, $rt_start64

bad_magic:
        mov     $RT_EXIT_BAD_MAGIC, %al
        out     %al, $0xf4
1:      hlt
        jmp     1b

        .section .data.rt_mb_pagetables, "aw"
        .balign 4096
rt_mb_pml4:
        .quad   rt_mb_pdpt + 7          /* present, writable, user */
        .fill   511, 8, 0
rt_mb_pdpt:
        .quad   rt_mb_pd + 7, rt_mb_pd + 0x1000 + 7, rt_mb_pd + 0x2000 + 7, rt_mb_pd + 0x3000 + 7
        .fill   508, 8, 0
rt_mb_pd:
.irp gib, 0,1,2,3
.irp hi, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .quad   (\gib << 30) + ((\hi * 16 + 0) << 21) + 0x87, (\gib << 30) + ((\hi * 16 + 1) << 21) + 0x87
        .quad   (\gib << 30) + ((\hi * 16 + 2) << 21) + 0x87, (\gib << 30) + ((\hi * 16 + 3) << 21) + 0x87
        .quad   (\gib << 30) + ((\hi * 16 + 4) << 21) + 0x87, (\gib << 30) + ((\hi * 16 + 5) << 21) + 0x87
        .quad   (\gib << 30) + ((\hi * 16 + 6) << 21) + 0x87, (\gib << 30) + ((\hi * 16 + 7) << 21) + 0x87
        .quad   (\gib << 30) + ((\hi * 16 + 8) << 21) + 0x87, (\gib << 30) + ((\hi * 16 + 9) << 21) + 0x87
        .quad   (\gib << 30) + ((\hi * 16 + 10) << 21) + 0x87, (\gib << 30) + ((\hi * 16 + 11) << 21) + 0x87
        .quad   (\gib << 30) + ((\hi * 16 + 12) << 21) + 0x87, (\gib << 30) + ((\hi * 16 + 13) << 21) + 0x87
        .quad   (\gib << 30) + ((\hi * 16 + 14) << 21) + 0x87, (\gib << 30) + ((\hi * 16 + 15) << 21) + 0x87
.endr
.endr
