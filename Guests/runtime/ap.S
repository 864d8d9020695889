/*
 * Application-processor trampoline. smp_start() copies it to RT_AP_TRAMPOLINE
 * (0x8000) and fills in its data words; a STARTUP IPI with vector 0x08 then
 * starts each AP here in real mode at 0800:0000. It goes 16 -> 32 -> 64 bit
 * with the runtime's GDT and the BSP's CR3, takes a ticket that picks its
 * stack, and jumps to rt_ap_start64 (runtime/start.S) in the image.
 *
 * The code runs at an address other than the one it is linked at, so it
 * names its own labels through AT(), and the image only by absolute address.
 */
#include "rt_asm.h"

#define AT(label)   (RT_AP_TRAMPOLINE + (label) - rt_ap_trampoline)

        .section .rodata.rt_ap_trampoline, "a"
        .globl  rt_ap_trampoline, rt_ap_trampoline_end
        .globl  rt_ap_gdt_ptr, rt_ap_cr3, rt_ap_stack_base, rt_ap_ticket
        .code16
rt_ap_trampoline:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        lgdtl   AT(rt_ap_gdt_ptr)
        mov     %cr0, %eax
        or      $1, %eax                /* PE */
        mov     %eax, %cr0
        ljmpl   $KERNEL_CS32, $AT(ap32)

        .code32
ap32:
        mov     $KERNEL_DS, %eax
        mov     %eax, %ds
        mov     %eax, %es
        mov     %eax, %ss
        mov     AT(rt_ap_cr3), %eax
        mov     %eax, %cr3
        mov     $0x620, %eax            /* PAE | OSFXSR | OSXMMEXCPT */
        mov     %eax, %cr4
        mov     $0xc0000080, %ecx       /* EFER.LME */
        rdmsr
        or      $0x100, %eax
        wrmsr
        mov     $0x80010033, %eax       /* PG | WP | NE | ET | MP | PE */
        mov     %eax, %cr0
        ljmp    $KERNEL_CS, $AT(ap64)

        .code64
ap64:
        mov     $1, %eax
        lock xadd %eax, AT(rt_ap_ticket)
        inc     %eax                    /* ticket t uses [base + t*size, base + (t+1)*size) */
        imul    $RT_AP_STACK_SIZE, %eax, %eax
        add     AT(rt_ap_stack_base), %rax
        mov     %rax, %rsp
        mov     $rt_ap_start64, %eax
        jmp     *%rax

        .balign 8
rt_ap_gdt_ptr:      .word 0             /* limit */
                    .long 0             /* base */
                    .word 0
rt_ap_cr3:          .quad 0
rt_ap_stack_base:   .quad 0
rt_ap_ticket:       .long 0
rt_ap_trampoline_end:
