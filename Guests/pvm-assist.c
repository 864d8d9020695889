/*
 * pvm-assist: the instructions a PVM host's emulator lacks, at CPL 0.
 *
 * On PVM hosts kernel-mode code is instruction-emulated, and the emulator
 * cannot do int3, clac/stac, fwait, popcnt, ldmxcsr/stmxcsr, or fxsave/
 * fxrstor with a SIB-addressed operand: each ends KVM_RUN with an emulation
 * failure, and Swiftlet's PVM assist completes it. On hardware KVM they
 * simply execute. Either way the results must be the processor's:
 *
 *   pvm-assist: int3: ok                     (#BP through the IDT, return address past the int3)
 *   pvm-assist: stac/clac: ok                (RFLAGS.AC 1, then 0)
 *   pvm-assist: fwait: ok
 *   pvm-assist: popcnt r64: ok               (and r32, r16, zero, rip-relative, page-crossing, gs:,
 *                                             and in STI's interrupt shadow)
 *   ...
 *   pvm-assist: ldmxcsr/stmxcsr: ok          (0x9fc0 round trip, also seen from user mode)
 *   pvm-assist: ldmxcsr reserved bit: ok     (#GP(0))
 *   pvm-assist: fxsave64: ok                 (XMM set in user mode, MXCSR, MXCSR_MASK as user mode sees it)
 *   pvm-assist: fxsave (32-bit format): ok
 *   pvm-assist: fxsave accessed/dirty: ok    (A and D set in the 2 MiB page's entry)
 *   pvm-assist: fxrstor64: ok                (user mode then reads the XMM values restored)
 *   pvm-assist: fxsave misaligned: ok        (#GP(0), RIP at the instruction)
 *   pvm-assist: fxsave into an unmapped page: ok   (#PF, error 0x2, CR2 = the page)
 *   pvm-assist: fxsave with CR0.TS: ok       (#NM)
 *   pvm-assist: all ok
 *
 * Exit 0x10 (status 33) when everything matched, 0x11 (35) otherwise; a
 * line ending in "FAILED (...)" says what differed.
 *
 * Needs at least 104 MiB of RAM (the page-table tests use the 2 MiB pages
 * at 96 and 100 MiB).
 */
#include "rt.h"

static unsigned failures;

static void report(const char *what, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void report(const char *what, bool ok, const char *fmt, ...) {
    if (ok) {
        printf("pvm-assist: %s: ok\n", what);
        return;
    }
    failures++;
    va_list ap;
    printf("pvm-assist: %s: FAILED (", what);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf(")\n");
}

/* ---- Exceptions the tests expect: recorded, then resumed at `resume_rip`. */

static volatile uint64_t bp_count, bp_rip;
static volatile uint64_t fault_vector, fault_error, fault_rip, fault_cr2;
uint64_t resume_rip;

static void on_breakpoint(struct int_frame *f) {
    bp_count++;
    bp_rip = f->rip;
}

static void on_fault(struct int_frame *f) {
    fault_vector = f->vector;
    fault_error = f->error;
    fault_rip = f->rip;
    if (f->vector == 14) __asm__ volatile("mov %%cr2, %0" : "=r"(fault_cr2));
    f->rip = resume_rip;
}

static void expect_fault(void) { fault_vector = fault_error = fault_rip = fault_cr2 = ~0ull; }

/* ---- User mode (native on PVM): XMM and MXCSR as the processor has them. */

static uint8_t user_stack[16384] __attribute__((aligned(16)));
static uint8_t user_image[512] __attribute__((aligned(16)));
static uint8_t xmm_in[2][16] = {
    { 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff },
    { 0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87, 0x78, 0x69, 0x5a, 0x4b, 0x3c, 0x2d, 0x1e, 0x0f },
};
static uint8_t xmm_out[2][16];

static uint64_t user_set_xmm(uint64_t unused) {
    (void)unused;
    __asm__ volatile("movdqu %0, %%xmm3; movdqu %1, %%xmm12" : : "m"(xmm_in[0]), "m"(xmm_in[1]));
    return 0;
}

static uint64_t user_get_xmm(uint64_t unused) {
    (void)unused;
    __asm__ volatile("movdqu %%xmm3, %0; movdqu %%xmm12, %1" : "=m"(xmm_out[0]), "=m"(xmm_out[1]));
    return 0;
}

static uint64_t user_fxsave(uint64_t unused) {
    (void)unused;
    __asm__ volatile("fxsave64 %0" : "=m"(user_image));
    return 0;
}

static uint64_t user_mxcsr(uint64_t unused) {
    (void)unused;
    uint32_t m;
    __asm__ volatile("stmxcsr %0" : "=m"(m));
    return m;
}

static uint64_t in_user_mode(uint64_t (*fn)(uint64_t)) { return user_call(fn, 0, user_stack + sizeof user_stack); }

/* ---- Helpers. */

static uint32_t load32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

#define FLAGS_ARITH 0x8d5ul    /* CF PF AF ZF SF OF */

/* The 2 MiB page-directory entry that maps `address` (boot tables: 2 MiB pages). */
static volatile uint64_t *pde_for(uint64_t address) {
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    uint64_t *pml4 = (uint64_t *)(cr3 & 0x000ffffffffff000ull);
    uint64_t *pdpt = (uint64_t *)(pml4[address >> 39 & 511] & 0x000ffffffffff000ull);
    uint64_t *pd = (uint64_t *)(pdpt[address >> 30 & 511] & 0x000ffffffffff000ull);
    return &pd[address >> 21 & 511];
}

static void invlpg(uint64_t address) { __asm__ volatile("invlpg (%0)" : : "r"(address) : "memory"); }

/* ---- The tests. */

extern char after_int3[];

static void test_int3(void) {
    irq_register(3, on_breakpoint);
    __asm__ volatile("int3\n.globl after_int3\nafter_int3:" ::: "memory");
    report("int3", bp_count == 1 && bp_rip == (uint64_t)after_int3, "%lu #BP, return address 0x%lx, expected 0x%lx",
           bp_count, bp_rip, (uint64_t)after_int3);
}

static void test_clac_stac(void) {
    uint64_t after_stac, after_clac;
    __asm__ volatile("stac; pushfq; popq %0" : "=r"(after_stac) : : "cc");
    __asm__ volatile("clac; pushfq; popq %0" : "=r"(after_clac) : : "cc");
    report("stac/clac", (after_stac >> 18 & 1) == 1 && (after_clac >> 18 & 1) == 0, "AC %lu after stac, %lu after clac",
           after_stac >> 18 & 1, after_clac >> 18 & 1);
}

static void test_fwait(void) {
    uint64_t marker = 0;
    __asm__ volatile("fwait; movq $1, %0" : "+r"(marker));
    report("fwait", marker == 1, "did not continue after fwait");
}

uint64_t popcnt_value = 0x8000000000000001ull;   /* rip-relative operand */
static uint8_t crossing[8192] __attribute__((aligned(4096)));
static uint8_t gs_area[64] __attribute__((aligned(16)));

static void test_popcnt(void) {
    uint64_t r, flags;

    __asm__ volatile("pushq %3; popfq; popcntq %2, %0; pushfq; popq %1"
                     : "=&r"(r), "=r"(flags) : "r"(0xf0f0000000000001ull), "i"(FLAGS_ARITH | 2) : "cc");
    report("popcnt r64", r == 9 && (flags & FLAGS_ARITH) == 0, "result %lu, flags 0x%lx", r, flags & FLAGS_ARITH);

    r = 0xdeadbeefdeadbeefull;
    __asm__ volatile("popcntl %k1, %k0" : "+r"(r) : "r"(0x12345678fffffffeull) : "cc");
    report("popcnt r32", r == 31, "result 0x%lx (the 32-bit result zero-extends)", r);

    r = 0xaaaabbbbcccc0000ull;
    __asm__ volatile("popcntw %w1, %w0" : "+r"(r) : "r"(0xffffffffffff00f0ull) : "cc");
    report("popcnt r16", r == 0xaaaabbbbcccc0004ull, "result 0x%lx (bits 63:16 must stay)", r);

    __asm__ volatile("pushq %3; popfq; popcntq %2, %0; pushfq; popq %1"
                     : "=&r"(r), "=r"(flags) : "r"(0ull), "i"(FLAGS_ARITH | 2) : "cc");
    report("popcnt zero", r == 0 && (flags & FLAGS_ARITH) == 0x40, "result %lu, flags 0x%lx (ZF only)", r, flags & FLAGS_ARITH);

    __asm__ volatile("popcntq popcnt_value(%%rip), %0" : "=r"(r) : : "cc", "memory");
    report("popcnt rip-relative", r == 2, "result %lu", r);

    uint64_t v = 0xff000000000000ffull;
    memcpy(crossing + 4092, &v, 8);   /* 4 bytes on each page */
    uint64_t base = (uint64_t)crossing, index = 4092;
    __asm__ volatile("popcntq (%1,%2,1), %0" : "=r"(r) : "r"(base), "r"(index) : "cc", "memory");
    report("popcnt across pages", r == 16, "result %lu", r);

    uint64_t g = 0x0000ffff0000ffffull;
    memcpy(gs_area + 16, &g, 8);
    wrmsr(0xc0000101, (uint64_t)gs_area);  /* GS base */
    __asm__ volatile("popcntq %%gs:16, %0" : "=r"(r) : : "cc", "memory");
    wrmsr(0xc0000101, 0);
    report("popcnt gs:", r == 32, "result %lu", r);

    /* In STI's interrupt shadow, which the assist ends with the instruction
     * (nothing can interrupt here: the 8259s are masked, the LAPIC is off). */
    __asm__ volatile("sti; popcntq %1, %0; cli" : "=r"(r) : "r"(0x3ull) : "cc");
    report("popcnt in an interrupt shadow", r == 2, "result %lu", r);
}

static void test_mxcsr(void) {
    uint32_t in = 0x9fc0, out = 0;   /* FZ, DAZ, all exceptions masked */
    __asm__ volatile("ldmxcsr %0" : : "m"(in));
    __asm__ volatile("stmxcsr %0" : "=m"(out));
    uint64_t user = in_user_mode(user_mxcsr);
    report("ldmxcsr/stmxcsr", out == 0x9fc0 && user == 0x9fc0, "stmxcsr 0x%x, user mode reads 0x%lx", out, user);

    uint32_t bad = 0x80001f80;
    expect_fault();
    __asm__ volatile("lea 1f(%%rip), %%rax; mov %%rax, resume_rip(%%rip); ldmxcsr %0; 1:" : : "m"(bad) : "rax", "memory");
    report("ldmxcsr reserved bit", fault_vector == 13 && fault_error == 0, "vector %ld error 0x%lx", fault_vector, fault_error);

    uint32_t reset = 0x1f80;
    __asm__ volatile("ldmxcsr %0" : : "m"(reset));
}

static uint8_t area[1024] __attribute__((aligned(16)));

static void test_fxsave_fxrstor(void) {
    uint64_t zero = 0;
    in_user_mode(user_set_xmm);
    in_user_mode(user_fxsave);   /* what the processor itself stores */

    memset(area, 0x5a, sizeof area);
    __asm__ volatile("fxsave64 (%0,%1,1)" : : "r"(area), "r"(zero) : "memory");
    bool ok = memcmp(area + 160 + 3 * 16, xmm_in[0], 16) == 0 && memcmp(area + 160 + 12 * 16, xmm_in[1], 16) == 0;
    ok = ok && load32(area + 24) == load32(user_image + 24) && load32(area + 28) == load32(user_image + 28);
    ok = ok && area[464] == 0x5a && area[511] == 0x5a;   /* bytes for software use are left alone */
    report("fxsave64", ok, "xmm3 %02x.. xmm12 %02x.., mxcsr 0x%x mask 0x%x (user mode: 0x%x, 0x%x), byte 464 0x%x",
           area[160 + 48], area[160 + 192], load32(area + 24), load32(area + 28), load32(user_image + 24),
           load32(user_image + 28), area[464]);

    static uint8_t legacy[512] __attribute__((aligned(16)));
    __asm__ volatile("fxsave (%0,%1,1)" : : "r"(legacy), "r"(zero) : "memory");
    report("fxsave (32-bit format)", memcmp(legacy + 160, area + 160, 256) == 0 && load32(legacy + 24) == load32(area + 24),
           "XMM or MXCSR differ from fxsave64's");

    /* Accessed and dirty bits: a fresh 2 MiB page with A and D clear. */
    uint64_t fresh = 100ull << 20;
    volatile uint64_t *pde = pde_for(fresh);
    uint64_t saved = *pde;
    *pde = saved & ~0x60ull;
    invlpg(fresh);
    __asm__ volatile("fxsave64 (%0,%1,1)" : : "r"(fresh), "r"(zero) : "memory");
    uint64_t after = *pde;
    report("fxsave accessed/dirty", (after & 0x60) == 0x60 && memcmp((void *)(fresh + 160 + 48), xmm_in[0], 16) == 0,
           "PDE 0x%lx", after);

    /* fxrstor64: new XMM values, read back natively in user mode. */
    for (int i = 0; i < 16; i++) {
        area[160 + 3 * 16 + i] = (uint8_t)(0xa0 + i);
        area[160 + 12 * 16 + i] = (uint8_t)(0x10 * i + 1);
    }
    __asm__ volatile("fxrstor64 (%0,%1,1)" : : "r"(area), "r"(zero) : "memory");
    in_user_mode(user_get_xmm);
    report("fxrstor64", memcmp(xmm_out[0], area + 160 + 48, 16) == 0 && memcmp(xmm_out[1], area + 160 + 192, 16) == 0,
           "user mode reads xmm3 %02x %02x.., xmm12 %02x %02x..", xmm_out[0][0], xmm_out[0][1], xmm_out[1][0], xmm_out[1][1]);

    /* Faults: #GP(0) for a misaligned operand, RIP at the instruction. */
    extern char fxsave_misaligned[];
    expect_fault();
    __asm__ volatile("lea 1f(%%rip), %%rax; mov %%rax, resume_rip(%%rip)\n"
                     ".globl fxsave_misaligned\nfxsave_misaligned: fxsave64 (%0,%1,1)\n1:"
                     : : "r"(area + 8), "r"(zero) : "rax", "memory");
    report("fxsave misaligned", fault_vector == 13 && fault_error == 0 && fault_rip == (uint64_t)fxsave_misaligned,
           "vector %ld error 0x%lx rip 0x%lx", fault_vector, fault_error, fault_rip);

    /* #PF: the operand starts 256 bytes before a 2 MiB page made not present. */
    uint64_t hole = 96ull << 20;
    pde = pde_for(hole);
    saved = *pde;
    memset((void *)(hole - 4096), 0x77, 4096);
    *pde = saved & ~1ull;
    invlpg(hole);
    expect_fault();
    __asm__ volatile("lea 1f(%%rip), %%rax; mov %%rax, resume_rip(%%rip); fxsave64 (%0,%1,1); 1:"
                     : : "r"(hole - 256), "r"(zero) : "rax", "memory");
    *pde = saved;
    invlpg(hole);
    uint8_t *before = (uint8_t *)(hole - 256);
    report("fxsave into an unmapped page", fault_vector == 14 && fault_error == 2 && fault_cr2 == hole && before[0] == 0x77,
           "vector %ld error 0x%lx cr2 0x%lx, first byte 0x%x", fault_vector, fault_error, fault_cr2, before[0]);

    /* #NM with CR0.TS set. */
    uint64_t cr0;
    __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
    __asm__ volatile("mov %0, %%cr0" : : "r"(cr0 | 8));
    expect_fault();
    __asm__ volatile("lea 1f(%%rip), %%rax; mov %%rax, resume_rip(%%rip); fxsave64 (%0,%1,1); 1:"
                     : : "r"(area), "r"(zero) : "rax", "memory");
    __asm__ volatile("clts");
    report("fxsave with CR0.TS", fault_vector == 7, "vector %ld", fault_vector);
}

int main(void) {
    pic_mask_all();
    irq_register(7, on_fault);
    irq_register(13, on_fault);
    irq_register(14, on_fault);
    test_int3();
    test_clac_stac();
    test_fwait();
    test_popcnt();
    test_mxcsr();
    test_fxsave_fxrstor();
    if (failures) {
        printf("pvm-assist: %u FAILED\n", failures);
        return EXIT_FAILURE_CODE;
    }
    printf("pvm-assist: all ok\n");
    return EXIT_SUCCESS_CODE;
}
