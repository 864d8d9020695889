/*
 * bench-first-insn (Multiboot): ends the VM as soon as it starts, for the
 * start-up benchmark. Standalone (no runtime). The 32-bit entry clears AL
 * and writes it to the debug-exit port: status (0 << 1) | 1 = 1. EAX holds
 * 0x2BADB002 on entry, hence the XOR before the OUT.
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
        xor     %eax, %eax
        out     %al, $0xf4
1:      hlt
        jmp     1b
