/*
 * triple-fault: an exception with no usable IDT.
 *
 *   triple-fault: loading an empty IDT, then ud2
 *
 * #UD cannot be delivered, nor the #GP/#DF that follow: the VMM must report
 * a triple fault (KVM_EXIT_SHUTDOWN) and exit with status 8.
 */
#include "rt.h"

int main(void) {
    static const struct { uint16_t limit; uint64_t base; } __attribute__((packed)) empty = { 0, 0 };
    printf("triple-fault: loading an empty IDT, then ud2\n");
    __asm__ volatile("lidt %0; ud2" : : "m"(empty));
    printf("triple-fault: still running\n");
    return EXIT_FAILURE_CODE;
}
