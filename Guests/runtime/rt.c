/*
 * Core runtime: start-up (TSS, IDT), machine control, COM1 output and
 * printf, exception reporting, and the few C library functions the
 * compiler expects.
 */
#include "rt.h"

/* ---- Start-up (called once by runtime/start.S on the BSP). */

/* The 64-bit TSS provides RSP0, the stack for interrupts taken at CPL 3
 * (user_call sets it), and an I/O permission bitmap allowing every port.
 * IOPL 3 would be enough on hardware, but PVM runs user mode with the real
 * IOPL 0 and consults only the bitmap. All zeros (in .bss) = all allowed;
 * the byte after it must be 0xff. */
struct tss {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3, iomap_base;
    uint8_t iomap[8192];
    uint8_t iomap_end;
} __attribute__((packed));
struct tss rt_tss;

extern uint64_t rt_gdt[];
extern uint8_t rt_idt[];
extern char rt_exception_stubs[], rt_irq_stubs[];
extern char rt_user_exit[];
NORETURN void rt_user_resume(uint64_t result);
extern const struct { uint16_t limit; uint64_t base; } __attribute__((packed)) rt_idt_ptr;

void rt_init(void);
void rt_init(void) {
    uint64_t base = (uint64_t)&rt_tss, limit = sizeof rt_tss - 1;
    rt_tss.iomap_base = offsetof(struct tss, iomap);
    rt_tss.iomap_end = 0xff;
    rt_gdt[TSS_SEL / 8] = (limit & 0xffff) | (base & 0xffffff) << 16 | 0x89ull << 40 |
                          (limit >> 16 & 0xf) << 48 | (base >> 24 & 0xff) << 56;
    rt_gdt[TSS_SEL / 8 + 1] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"(TSS_SEL));
    for (unsigned v = 0; v < 32; v++) idt_set_gate(v, rt_exception_stubs + 16 * v, 0);
    __asm__ volatile("lidt %0" : : "m"(rt_idt_ptr));
}

/* ---- Machine control. */

void debug_exit(uint8_t code) {
    outb(0xf4, code);
    for (;;) { cli(); hlt(); }  /* only if there is no debug-exit device */
}

void power_off(void) { outb(0x600, 0x34); }
void reset_via_i8042(void) { outb(0x64, 0xfe); }
void reset_via_port(void) { outb(0x602, 1); }

/* ---- COM1 and printf. */

static volatile uint32_t print_lock;

void serial_putc(char c) {
    while (!(inb(COM1 + 5) & 0x20)) cpu_relax();  /* LSR.THRE */
    outb(COM1, (uint8_t)c);
}

void serial_write(const char *s, size_t n) {
    while (n--) serial_putc(*s++);
}

struct sink { char *buf; size_t size, len; };  /* buf == 0: COM1 */

static void put(struct sink *o, char c) {
    if (!o->buf) serial_putc(c);
    else if (o->len + 1 < o->size) o->buf[o->len] = c;
    o->len++;
}

static void put_padded(struct sink *o, const char *s, size_t n, int width, bool left, char pad) {
    /* With zero padding a sign goes before the zeros. */
    if (pad == '0' && n && (*s == '-')) { put(o, *s++); n--; width--; }
    if (!left) for (int i = (int)n; i < width; i++) put(o, pad);
    for (size_t i = 0; i < n; i++) put(o, s[i]);
    if (left) for (int i = (int)n; i < width; i++) put(o, ' ');
}

static void format(struct sink *o, const char *f, va_list ap) {
    for (; *f; f++) {
        if (*f != '%') { put(o, *f); continue; }
        bool left = false; char pad = ' '; int width = 0, longs = 0;
        for (f++; *f == '-' || *f == '0'; f++) { if (*f == '-') left = true; else pad = '0'; }
        if (*f == '*') { width = va_arg(ap, int); f++; }
        for (; *f >= '0' && *f <= '9'; f++) width = width * 10 + (*f - '0');
        for (; *f == 'l' || *f == 'z'; f++) longs++;
        if (left) pad = ' ';
        char tmp[24], *end = tmp + sizeof tmp, *p = end;
        uint64_t u; unsigned base = 10; bool neg = false;
        const char *digits = "0123456789abcdef";
        switch (*f) {
        case 'c': tmp[0] = (char)va_arg(ap, int); put_padded(o, tmp, 1, width, left, ' '); continue;
        case 's': { const char *s = va_arg(ap, const char *); if (!s) s = "(null)";
                    put_padded(o, s, strlen(s), width, left, ' '); continue; }
        case '%': put(o, '%'); continue;
        case 'd': case 'i': {
            int64_t v = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
            neg = v < 0; u = neg ? -(uint64_t)v : (uint64_t)v; break; }
        case 'u': u = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned); break;
        case 'X': digits = "0123456789ABCDEF"; /* fall through */
        case 'x': u = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned); base = 16; break;
        case 'p': u = (uint64_t)va_arg(ap, void *); base = 16; put(o, '0'); put(o, 'x'); width -= 2; break;
        default: put(o, '%'); if (!*f) return; put(o, *f); continue;
        }
        do { *--p = digits[u % base]; u /= base; } while (u);
        if (neg) *--p = '-';
        put_padded(o, p, (size_t)(end - p), width, left, pad);
    }
}

int vprintf(const char *fmt, va_list ap) {
    struct sink o = { 0, 0, 0 };
    while (__atomic_exchange_n(&print_lock, 1, __ATOMIC_ACQUIRE)) cpu_relax();
    format(&o, fmt, ap);
    __atomic_store_n(&print_lock, 0, __ATOMIC_RELEASE);
    return (int)o.len;
}

int printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int snprintf(char *buf, size_t size, const char *fmt, ...) {
    struct sink o = { buf, size, 0 };
    va_list ap;
    va_start(ap, fmt);
    format(&o, fmt, ap);
    va_end(ap);
    if (size) buf[o.len < size ? o.len : size - 1] = 0;
    return (int)o.len;
}

/* ---- Interrupts. */

void idt_set_gate(uint8_t vector, void *entry, unsigned dpl) {
    uint64_t a = (uint64_t)entry;
    uint64_t *g = (uint64_t *)(rt_idt + 16 * vector);
    /* offset 15:0, selector, type 0xe (interrupt gate) | DPL | present, offset 63:16 */
    g[0] = (a & 0xffff) | (uint64_t)KERNEL_CS << 16 | (uint64_t)(0x8e | (dpl & 3) << 5) << 40 |
           (a >> 16 & 0xffff) << 48;
    g[1] = a >> 32;
}

static irq_handler handlers[256];

void irq_register(uint8_t vector, irq_handler handler) {
    handlers[vector] = handler;
    idt_set_gate(vector, vector < 32 ? rt_exception_stubs + 16 * vector : rt_irq_stubs + 16 * (vector - 32), 0);
}

static const char *const exception_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS", "#GP",
    "#PF", "?", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

void rt_isr_dispatch(struct int_frame *f);
void rt_isr_dispatch(struct int_frame *f) {
    if (f->vector < 256 && handlers[f->vector]) {
        handlers[f->vector](f);
        return;
    }
    if (f->vector == 6 && (f->cs & 3) == 3 && f->rip == (uint64_t)rt_user_exit)
        rt_user_resume(f->rax);  /* user_call's way back */
    print_lock = 0;  /* the fault may have hit a CPU holding it */
    if (f->vector < 32) {
        const char *name = exception_names[f->vector];
        printf("exception %lu (%s) error 0x%lx rip 0x%016lx cs 0x%lx rflags 0x%lx rsp 0x%lx", f->vector,
               name ? name : "?", f->error, f->rip, f->cs, f->rflags, f->rsp);
        if (f->vector == 14) {
            uint64_t cr2;
            __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
            printf(" cr2 0x%lx", cr2);
        }
        printf("\n");
    } else {
        printf("unexpected interrupt vector 0x%lx rip 0x%016lx cs 0x%lx\n", f->vector, f->rip, f->cs);
    }
    debug_exit(RT_EXIT_EXCEPTION);
}

/* ---- C library. String instructions: one emulated instruction, not a loop. */

void *memset(void *d, int c, size_t n) {
    void *r = d;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return r;
}

void *memcpy(void *d, const void *s, size_t n) {
    void *r = d;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return r;
}

int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    for (; n; n--, x++, y++) if (*x != *y) return *x - *y;
    return 0;
}

size_t strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

int strcmp(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return (uint8_t)*a - (uint8_t)*b;
}

int strncmp(const char *a, const char *b, size_t n) {
    for (; n; n--, a++, b++) {
        if (*a != *b) return (uint8_t)*a - (uint8_t)*b;
        if (!*a) return 0;
    }
    return 0;
}
