/*
 * cpuid: prints what CPUID tells this CPU about itself.
 *
 *   cpuid: leaf 1 apic id <id>, logical cpus <n>, hypervisor <0|1>
 *   cpuid: leaf 0xb apic id <x2apic id>, smt <t>, cores <c>
 *   cpuid: hypervisor "<signature>", max leaf 0x<leaf>
 *   cpuid: cx16 <0|1>, xsave <0|1>, popcnt <0|1>
 *
 * For the CPU-model tests: APIC IDs and topology from the VMM, the KVM
 * signature, and features hidden with --cpu-features. Exit status 33.
 */
#include "rt.h"

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

int main(void) {
    uint32_t r[4];
    cpuid(1, 0, r);
    uint32_t ecx1 = r[2];
    printf("cpuid: leaf 1 apic id %u, logical cpus %u, hypervisor %u\n", r[1] >> 24, (r[1] >> 16) & 0xff, ecx1 >> 31);
    uint32_t smt[4], core[4];
    cpuid(0xb, 0, smt);
    cpuid(0xb, 1, core);
    printf("cpuid: leaf 0xb apic id %u, smt %u, cores %u\n", smt[3], smt[1] & 0xffff, core[1] & 0xffff);
    cpuid(0x40000000, 0, r);
    char sig[13];
    for (int i = 0; i < 4; i++) { sig[i] = (char)(r[1] >> (8 * i)); sig[4 + i] = (char)(r[2] >> (8 * i)); sig[8 + i] = (char)(r[3] >> (8 * i)); }
    sig[12] = 0;
    printf("cpuid: hypervisor \"%s\", max leaf 0x%x\n", sig, r[0]);
    printf("cpuid: cx16 %u, xsave %u, popcnt %u\n", (ecx1 >> 13) & 1, (ecx1 >> 26) & 1, (ecx1 >> 23) & 1);
    return EXIT_SUCCESS_CODE;
}
