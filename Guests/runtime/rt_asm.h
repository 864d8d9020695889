/*
 * Constants shared by the runtime's assembly and C code (included by rt.h).
 * Selectors follow the GDT of docs/boot-protocol.md, plus the TSS.
 */
#ifndef RT_ASM_H
#define RT_ASM_H

#define KERNEL_CS           0x08
#define KERNEL_DS           0x10
#define KERNEL_CS32         0x18
#define USER_DS             0x23    /* 0x20 | RPL 3 */
#define USER_CS             0x2b    /* 0x28 | RPL 3 */
#define TSS_SEL             0x30

#define RT_VEC_SPURIOUS     0xff    /* LAPIC spurious-interrupt vector */

#define RT_BSP_STACK_SIZE   16384
#define RT_AP_STACK_SIZE    8192    /* each AP's stack, allocated just past the image */
#define RT_AP_TRAMPOLINE    0x8000  /* free low memory in both entry protocols; SIPI vector 0x08 */

#define MULTIBOOT_MAGIC             0x1BADB002
#define MULTIBOOT_BOOTLOADER_MAGIC  0x2BADB002

#define RT_EXIT_BAD_MAGIC   0x7d    /* Multiboot entry without EAX = 0x2BADB002 (status 251) */
#define RT_EXIT_EXCEPTION   0x7e    /* an unhandled exception or interrupt (status 253) */

#endif
