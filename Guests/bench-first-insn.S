/*
 * bench-first-insn (Multiboot): the start-up benchmark's guest. Standalone
 * (no runtime). Its first instructions write one byte ('!') to COM1's
 * transmit register, which the harness times as the guest's first sign of
 * life; then it ends the VM through debug exit with 0: status
 * (0 << 1) | 1 = 1. EAX holds 0x2BADB002 on entry, hence the XOR.
 */
        .section .multiboot, "a"
        .balign 4
header:
        .long   0x1BADB002, 0x00010000, -(0x1BADB002 + 0x00010000)
        .long   header, __image_start, __data_end, __image_end, _start

        .section .text.entry, "ax"
        .code32
        .globl  _start
_start:
        mov     $0x3f8, %dx
        mov     $'!', %al
        out     %al, %dx
        xor     %eax, %eax
        out     %al, $0xf4
1:      hlt
        jmp     1b
