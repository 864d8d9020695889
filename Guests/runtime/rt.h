/*
 * Swiftlet guest runtime: the API test guests are written against.
 *
 * The machine is the one docs/boot-protocol.md describes. A guest defines
 * `int main(void)`; the runtime enters it at CPL 0 in long mode with its own
 * GDT (with a TSS), an IDT whose exception handlers report and exit, and
 * interrupts disabled. Returning from main is debug_exit(return value).
 *
 * Cost model (PVM hosts): kernel-mode instructions are emulated (~0.4 us
 * each), user-mode ones run natively, and each port-I/O or MMIO access
 * handled by the VMM costs ~20 us. Keep kernel paths short; put loops in
 * user mode (user_call).
 */
#ifndef RT_H
#define RT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_asm.h"

#define NORETURN __attribute__((noreturn))

/* ---- Exit codes. Guests' own results use values >= 8 (see the boot protocol). */
#define EXIT_SUCCESS_CODE 0x10  /* process exit status 33 */
#define EXIT_FAILURE_CODE 0x11  /* process exit status 35 */

/* ---- Port and MMIO access. */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
/* rep insb: one exit for up to a page on KVM (the VMM sees io.count > 1). */
static inline void insb(uint16_t port, void *buf, size_t n) {
    __asm__ volatile("rep insb" : "+D"(buf), "+c"(n) : "d"(port) : "memory");
}
static inline uint32_t mmio_read32(uint64_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }

/* ---- CPU. sti_hlt() waits for an interrupt without the lost-wakeup race:
 * STI's one-instruction shadow covers the HLT. */
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void hlt(void) { __asm__ volatile("hlt" ::: "memory"); }
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline uint64_t rdtsc(void) { uint32_t lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return (uint64_t)hi << 32 | lo; }
static inline uint64_t read_rflags(void) { uint64_t f; __asm__ volatile("pushfq; popq %0" : "=r"(f)); return f; }
static inline uint64_t rdmsr(uint32_t msr) { uint32_t lo, hi; __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr)); return (uint64_t)hi << 32 | lo; }
static inline void wrmsr(uint32_t msr, uint64_t v) { __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32))); }
#define MSR_EFER  0xc0000080
#define MSR_STAR  0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_FMASK 0xc0000084
static inline unsigned current_cpl(void) { uint16_t cs; __asm__ volatile("mov %%cs, %0" : "=r"(cs)); return cs & 3; }
static inline unsigned current_iopl(void) { return (read_rflags() >> 12) & 3; }

/* ---- Machine control. debug_exit ends the VM with status (code << 1) | 1.
 * power_off and reset_via_i8042 return if the machine keeps running, so a
 * guest can report that. */
NORETURN void debug_exit(uint8_t code);
void power_off(void);           /* 0x34 (SLP_TYP S5 | SLP_EN) to port 0x600 */
void reset_via_i8042(void);     /* command 0xfe to port 0x64 */
void reset_via_port(void);      /* 1 to port 0x602 */

/* ---- COM1 (0x3f8). The runtime leaves the UART as the VMM set it up.
 * printf supports %d %i %u %x %X %p %s %c %% with optional '-', '0', width,
 * and the l/ll/z length modifiers; output is serialized across CPUs (do not
 * print from an interrupt handler that may interrupt a printing CPU). */
#define COM1 0x3f8
void serial_putc(char c);
void serial_write(const char *s, size_t n);
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- fw_cfg (selector 0x510, data 0x511). Integers are little-endian;
 * absent items read as 0. */
#define FW_CFG_SIGNATURE   0x00
#define FW_CFG_ID          0x01
#define FW_CFG_RAM_SIZE    0x03
#define FW_CFG_NB_CPUS     0x05
#define FW_CFG_INITRD_SIZE 0x0b
#define FW_CFG_MAX_CPUS    0x0f
#define FW_CFG_INITRD_DATA 0x12
#define FW_CFG_CMDLINE_SIZE 0x14
#define FW_CFG_CMDLINE_DATA 0x15
#define FW_CFG_FILE_DIR    0x19
bool fwcfg_present(void);                           /* signature is "QEMU" */
void fwcfg_select(uint16_t key);                    /* rewinds the item */
void fwcfg_read(void *buf, size_t n);               /* next n bytes of the selected item */
uint16_t fwcfg_u16(uint16_t key);
uint32_t fwcfg_u32(uint16_t key);
uint64_t fwcfg_u64(uint16_t key);
size_t fwcfg_cmdline(char *buf, size_t size);       /* NUL-terminated; returns strlen */
uint32_t fwcfg_file_count(void);
/* Looks a file up in the directory (key 0x19); false if absent. */
bool fwcfg_find_file(const char *name, uint16_t *key, uint32_t *size);

/* ---- Interrupts. Exceptions (0-31) print vector, error code, RIP, CS (and
 * CR2 for #PF) and end with debug_exit(RT_EXIT_EXCEPTION), status 253.
 * Vectors 32-255 get a handler with irq_register; the handler sends the
 * EOI itself (lapic_eoi) when the source needs one. Vector 0xff is the
 * LAPIC's spurious vector (RT_VEC_SPURIOUS); 0x20-0x2f are where the masked
 * 8259s point, so use 0x30 and above. */
struct int_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rdi, rsi, rbp, rbx, rdx, rcx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;  /* pushed by the CPU */
};
typedef void (*irq_handler)(struct int_frame *frame);
void irq_register(uint8_t vector, irq_handler handler);
void idt_set_gate(uint8_t vector, void *entry, unsigned dpl);

/* ---- Local APIC (xAPIC, MMIO at 0xfee00000). Under KVM the timer counts
 * at 1 GHz before the divider. */
#define LAPIC_BASE   0xfee00000ul
#define LAPIC_ID     0x020
#define LAPIC_VER    0x030
#define LAPIC_EOI    0x0b0
#define LAPIC_SVR    0x0f0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR  0x390
#define LAPIC_TIMER_DIV  0x3e0
#define ICR_INIT        0x00000500
#define ICR_STARTUP     0x00000600
#define ICR_FIXED       0x00000000
#define ICR_ASSERT      0x00004000
#define ICR_ALL_BUT_SELF 0x000c0000
/* Set once the BSP has called lapic_use_x2apic: every CPU then reaches
 * its LAPIC through the x2APIC MSRs (0x800 + register / 16), and APs
 * switch to x2APIC mode first thing when they start. */
extern volatile bool rt_x2apic;
static inline uint32_t lapic_read(uint32_t reg) {
    return rt_x2apic ? (uint32_t)rdmsr(0x800 + (reg >> 4)) : mmio_read32(LAPIC_BASE + reg);
}
static inline void lapic_write(uint32_t reg, uint32_t v) {
    if (rt_x2apic) wrmsr(0x800 + (reg >> 4), v); else mmio_write32(LAPIC_BASE + reg, v);
}
void lapic_use_x2apic(void);    /* this CPU and every AP started later */
void lapic_x2apic_mode(void);   /* IA32_APIC_BASE: EN and EXTD on this CPU */
static inline void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }
uint32_t lapic_id(void);
void lapic_enable(void);        /* SVR software enable; spurious vector 0xff */
/* icr: delivery mode | level | shorthand | vector; dest is an APIC ID. */
void lapic_send_ipi(uint32_t dest, uint32_t icr);
/* divide: 1, 2, 4, ... 128. The timer is stopped with lapic_timer_stop. */
void lapic_timer_periodic(uint8_t vector, uint32_t count, unsigned divide);
void lapic_timer_oneshot(uint8_t vector, uint32_t count, unsigned divide);
void lapic_timer_stop(void);
/* Busy-waits using the LAPIC timer (masked, one-shot): it disturbs a
 * running LAPIC timer. */
void delay_us(uint64_t us);

/* ---- I/O APIC (0xfec00000). Pins are edge-triggered, active high, fixed
 * delivery, physical destination unless flags say otherwise. */
#define IOAPIC_BASE 0xfec00000ul
#define IOAPIC_LEVEL    (1u << 15)
#define IOAPIC_LOW      (1u << 13)
#define IOAPIC_MASKED   (1u << 16)
unsigned ioapic_pin_count(void);
void ioapic_route(unsigned pin, uint8_t vector, uint8_t dest_apic_id, uint32_t flags);
void ioapic_mask(unsigned pin);
void ioapic_unmask(unsigned pin);

/* ---- 8259 PICs: remapped to vectors 0x20-0x2f and fully masked. */
void pic_mask_all(void);

/* ---- SMP. smp_start sends INIT and STARTUP IPIs to all other CPUs; each AP
 * switches to long mode on its own RT_AP_STACK_SIZE stack (just past the
 * image, in arrival order), increments smp_cpus_online, enables its LAPIC
 * and calls ap_main(its APIC ID); when ap_main returns it halts with
 * interrupts off. Returns the number of CPUs online (BSP included) once
 * `expected` are, or after timeout_ms. APs must not use user_call. */
extern volatile uint32_t smp_cpus_online;
void ap_main(unsigned apic_id);
unsigned smp_start(unsigned expected, unsigned timeout_ms);
/* One AP, by APIC ID: smp_start_ap sends INIT and one STARTUP IPI and
 * returns at once (the AP arrives in ap_main as above); smp_send_startup
 * sends another STARTUP IPI (harmless once the AP runs). Every start, also
 * of a CPU started before, takes a new RT_AP_STACK_SIZE stack slot. */
void smp_start_ap(unsigned apic_id);
void smp_send_startup(unsigned apic_id);
/* Waits until *counter >= n or timeout_ms passes (LAPIC timer); returns *counter. */
uint32_t wait_for_count(volatile uint32_t *counter, uint32_t n, unsigned timeout_ms);

/* ---- User mode. Runs fn(arg) at CPL 3 with IOPL 3 and an all-ports I/O
 * bitmap (port I/O allowed) on the given stack (16-byte aligned top) and
 * returns its result at CPL 0. Interrupts are enabled in user mode iff they
 * are at the call; those taken in user mode run on the kernel stack below
 * the caller's frame. Any identity-mapped memory is accessible (the page
 * tables are user-accessible). The return path is a #UD at a known
 * address (see runtime/start.S). On PVM, user code cannot use `int n`,
 * SYSCALL, CLI/STI, and reads its CS as the host's (0x33; the RPL is still
 * 3). Not reentrant; BSP only. */
uint64_t user_call(uint64_t (*fn)(uint64_t), uint64_t arg, void *stack_top);

/* ---- Multiboot v1 (runtime/multiboot.S). rt_multiboot_magic is
 * 0x2BADB002 and rt_multiboot_info the information structure's address
 * after a Multiboot entry; both are 0 after the direct 64-bit entry. */
extern uint32_t rt_multiboot_magic, rt_multiboot_info;
struct multiboot_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr, drives_length, drives_addr, config_table, boot_loader_name;
};
struct multiboot_module { uint32_t mod_start, mod_end, string, reserved; };
struct multiboot_mmap_entry { uint32_t size; uint64_t addr, len; uint32_t type; } __attribute__((packed));

/* ---- Freestanding C library pieces (the compiler may call memset/memcpy). */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* ---- Entry points the guest provides. */
int main(void);

#endif
