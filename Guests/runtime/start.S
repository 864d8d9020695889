/*
 * 64-bit entry, descriptor tables, interrupt stubs and the user-mode switch.
 *
 * Kernel-mode code is instruction-emulated on PVM hosts (~0.4 us per
 * instruction), so start-up does as little as possible: no page-table
 * building (the boot tables are used as they are), 32 IDT gates written at
 * start-up and the rest only when a handler is registered.
 */
#include "rt_asm.h"

/* ---------------------------------------------------------------------- */
/* Direct 64-bit entry (docs/boot-protocol.md): long mode, CPL 0, the VMM's
 * GDT at 0x500 and page tables at 0x9000, interrupts off. runtime/multiboot.S
 * joins here too, after its own switch to long mode. */
        .section .text.entry, "ax"
        .code64
        .globl  _start, rt_start64
_start:
rt_start64:
        lea     rt_bsp_stack_top(%rip), %rsp
        lea     __bss_start(%rip), %rdi
        lea     __bss_end(%rip), %rcx
        sub     %rdi, %rcx
        shr     $3, %rcx
        xor     %eax, %eax
        cld
        rep stosq
        call    rt_load_segments
        call    rt_init                 /* TSS, IDT (C, runtime/rt.c) */
        call    main
        mov     %eax, %edi
        call    debug_exit              /* main's return value is the exit code */

/* Loads the runtime's GDT and reloads every segment register from it. The
 * VMM's GDT at 0x500 has the same layout; ours adds the TSS and lives in the
 * image, so the guest may reuse low memory. */
        .section .text.rt_load_segments, "ax"
rt_load_segments:
        lgdt    rt_gdt_ptr(%rip)
        pop     %rax                    /* far return to reload CS */
        pushq   $KERNEL_CS
        push    %rax
        mov     $KERNEL_DS, %eax
        mov     %eax, %ds
        mov     %eax, %es
        mov     %eax, %ss
        xor     %eax, %eax
        mov     %eax, %fs
        mov     %eax, %gs
        lretq

/* Application processors arrive here from the trampoline (runtime/ap.S), on
 * their own stack, with the runtime's GDT loaded and paging on. They share
 * the BSP's IDT but load no TSS, so they must not enter user mode. */
        .section .text.rt_ap_start64, "ax"
        .globl  rt_ap_start64
rt_ap_start64:
        call    rt_load_segments
        lidt    rt_idt_ptr(%rip)
        call    rt_ap_entry             /* runtime/smp.c: ap_main, then halt here */
1:      cli
        hlt
        jmp     1b

/* ---------------------------------------------------------------------- */
/* GDT: the boot protocol's six descriptors, then a 64-bit TSS (filled in by
 * rt_init, since its base address is split across the descriptor). */
        .section .data.rt_gdt, "aw"
        .balign 16
        .globl  rt_gdt
rt_gdt:
        .quad   0
        .quad   0x00af9b000000ffff      /* 0x08 64-bit code, DPL 0 */
        .quad   0x00cf93000000ffff      /* 0x10 data, DPL 0 */
        .quad   0x00cf9b000000ffff      /* 0x18 32-bit code, DPL 0 (Multiboot entry, AP trampoline) */
        .quad   0x00cff3000000ffff      /* 0x20 data, DPL 3 */
        .quad   0x00affb000000ffff      /* 0x28 64-bit code, DPL 3 */
        .quad   0, 0                    /* 0x30 TSS */
rt_gdt_end:
        .balign 8
        .globl  rt_gdt_ptr
rt_gdt_ptr:                             /* its first 6 bytes also serve lgdt in 32-bit mode */
        .word   rt_gdt_end - rt_gdt - 1
        .quad   rt_gdt

        .globl  rt_idt_ptr
rt_idt_ptr:
        .word   256 * 16 - 1
        .quad   rt_idt

/* Multiboot entry state, recorded by runtime/multiboot.S (0 on direct entry).
 * In .data rather than .bss: they are written before .bss is cleared. */
        .globl  rt_multiboot_magic, rt_multiboot_info
rt_multiboot_magic:     .long 0
rt_multiboot_info:      .long 0

        .section .bss.rt_idt, "aw", @nobits
        .balign 16
        .globl  rt_idt
rt_idt: .zero   256 * 16

        .section .noinit.rt_bsp_stack, "aw", @nobits
        .balign 16
        .zero   RT_BSP_STACK_SIZE
rt_bsp_stack_top:

/* ---------------------------------------------------------------------- */
/* Interrupt stubs, 16 bytes apart so that the stub for vector v is at
 * base + 16 * v and no pointer table is needed. Each pushes an error code
 * (0 when the CPU does not) and the vector, making one frame layout
 * (struct int_frame in rt.h). */
.macro  stub v
        .balign 16
        .if (\v == 8) || (\v >= 10 && \v <= 14) || (\v == 17) || (\v == 21) || (\v == 29) || (\v == 30)
        .else
        pushq   $0
        .endif
        pushq   $\v
        jmp     rt_isr_common
.endm

        .section .text.rt_exception_stubs, "ax"
        .balign 16
        .globl  rt_exception_stubs
rt_exception_stubs:
.irp hi, 0,1
.irp lo, 0,1,2,3,4,5,6,7,8,9,a,b,c,d,e,f
        stub    0x\hi\lo
.endr
.endr

/* Vectors 32-255, linked in only by guests that call irq_register. */
        .section .text.rt_irq_stubs, "ax"
        .balign 16
        .globl  rt_irq_stubs
rt_irq_stubs:
.irp hi, 2,3,4,5,6,7,8,9,a,b,c,d,e,f
.irp lo, 0,1,2,3,4,5,6,7,8,9,a,b,c,d,e,f
        stub    0x\hi\lo
.endr
.endr

        .section .text.rt_isr_common, "ax"
rt_isr_common:
        push    %rax
        push    %rcx
        push    %rdx
        push    %rbx
        push    %rbp
        push    %rsi
        push    %rdi
        push    %r8
        push    %r9
        push    %r10
        push    %r11
        push    %r12
        push    %r13
        push    %r14
        push    %r15
        mov     %rsp, %rdi
        cld
        call    rt_isr_dispatch
        pop     %r15
        pop     %r14
        pop     %r13
        pop     %r12
        pop     %r11
        pop     %r10
        pop     %r9
        pop     %r8
        pop     %rdi
        pop     %rsi
        pop     %rbp
        pop     %rbx
        pop     %rdx
        pop     %rcx
        pop     %rax
        add     $16, %rsp               /* vector and error code */
        iretq

/* The LAPIC's spurious vector needs no EOI and no handler. */
        .section .text.rt_spurious_stub, "ax"
        .globl  rt_spurious_stub
rt_spurious_stub:
        iretq

/* ---------------------------------------------------------------------- */
/* uint64_t user_call(uint64_t (*fn)(uint64_t), uint64_t arg, void *stack_top)
 *
 * Runs fn(arg) at CPL 3 with IOPL 3 on the given stack and returns its
 * result at CPL 0. The interrupt flag in user mode is the caller's. TSS.RSP0
 * is set to the kernel stack just below the saved registers, so interrupts
 * taken in user mode run there.
 *
 * The way back is a #UD from the UD2 at rt_user_exit: rt_isr_dispatch
 * recognizes it and calls rt_user_resume. Neither `int n` (a DPL-3 gate)
 * nor SYSCALL would do on PVM, which turns a user-mode `int n` into #UD and
 * lands a user-mode SYSCALL at LSTAR still in user mode; exceptions are
 * delivered like on hardware. Not reentrant; BSP only (APs load no TSS). */
        .section .text.user_call, "ax"
        .globl  user_call
user_call:
        push    %rbx
        push    %rbp
        push    %r12
        push    %r13
        push    %r14
        push    %r15
        pushfq
        mov     %rsp, rt_user_saved_rsp(%rip)
        mov     %rsp, rt_tss+4(%rip)    /* TSS.RSP0 */
        mov     (%rsp), %rax            /* the caller's RFLAGS */
        and     $0x200, %eax            /* keep IF */
        or      $0x3002, %eax           /* IOPL 3, reserved bit 1 */
        pushq   $USER_DS
        push    %rdx
        push    %rax
        pushq   $USER_CS
        lea     rt_user_trampoline(%rip), %rax
        push    %rax
        mov     %rdi, %rax
        mov     %rsi, %rdi
        iretq

rt_user_trampoline:                     /* CPL 3 from here */
        call    *%rax
        .globl  rt_user_exit
rt_user_exit:
        ud2                             /* RAX, the result, reaches rt_isr_dispatch in the frame */

/* void rt_user_resume(uint64_t result): CPL 0, from the #UD handler. Drops
 * the exception frame and everything above the saved registers. */
        .globl  rt_user_resume
rt_user_resume:
        mov     %rdi, %rax
        mov     rt_user_saved_rsp(%rip), %rsp
        popfq                           /* the caller's IF */
        pop     %r15
        pop     %r14
        pop     %r13
        pop     %r12
        pop     %rbp
        pop     %rbx
        ret

        .section .bss.rt_user_saved_rsp, "aw", @nobits
        .balign 8
rt_user_saved_rsp:
        .quad   0
