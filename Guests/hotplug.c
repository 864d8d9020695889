/*
 * hotplug: CPUs added and removed while the guest runs, through Swiftlet's
 * CPU hot-plug register block (docs/acpi-cpu-hotplug.md: MMIO 0xfeb00000,
 * selector / status-command / events), the way the DSDT's AML uses it but
 * without ACPI. Boot it with e.g. `--cpus 1 --max-cpus 4`.
 *
 * Output (one line per step, BSP only):
 *
 *   hotplug: cpus <n>, max cpus <m>
 *   hotplug: cpu <i> online work=<w>          for each boot CPU other than the BSP
 *   hotplug: ready
 *   ... then, for each CPU the host adds or asks to remove:
 *   hotplug: cpu <i> online work=<w>          INSERTING seen: acknowledged, started
 *                                             with INIT/SIPI, ran its work (w = 1000)
 *   hotplug: cpu <i> ejected                  REMOVING seen: acknowledged, the AP
 *                                             stopped (cli; hlt), EJECT written,
 *                                             STATUS.ENABLED read back 0
 *   hotplug: cpu 0 removal refused            (the BSP stays; REMOVING acknowledged)
 *   ... and at the end:
 *   hotplug: done: <a> online, <r> ejected, <e> events, <k> interrupts, <h> host
 *                  (a counts every start, boot APs included; e = scans run;
 *                  h = interrupts with vectors 0x50-0x8f the host sent CPU 0)
 *
 * How the host ends it (whichever comes first):
 *   - it writes the line "done" (ended by \n or \r) to the serial port (the
 *     VMM's standard input, or SerialPort.receive in a test);
 *   - with "hotplug.ops=<K>" on the command line: once K operations (the
 *     "online" lines after "ready" plus the "ejected" lines) are complete.
 * Exit status 33 after "done", 35 after a line starting "hotplug: FAILED:"
 * (no register block, a CPU that does not start or stop within 5 s, ENABLED
 * still set after EJECT, or no "done" within hotplug.timeout=<S> seconds,
 * default 300).
 *
 * How it waits: the BSP halts with interrupts on; it wakes every 10 ms
 * (LAPIC timer) and at once on the block's interrupt (GSI 23 through IOAPIC
 * pin 23, if the IOAPIC has it; only counted, the poll does the work), then
 * reads EVENTS (one MMIO exit) and the UART's LSR (one port exit). A set
 * CPU_HOTPLUG is acknowledged (write 1 to clear) before the scan of every
 * CPU's status, so a change during the scan raises it again. The per-CPU
 * work runs at CPL 0 on the AP (APs cannot use user mode), so it is short.
 * APs wait for the stop request halted too: the BSP sets their stop flag and
 * sends them an IPI; an AP sends the BSP an IPI when it has started (work
 * done) and when it has stopped, so neither waits for the next tick.
 *
 * Each start of a CPU (also of one ejected before and added again) takes a
 * new 8 KiB AP stack past the image (runtime/smp.c); 128 MiB of RAM allows
 * thousands.
 */
#include "rt.h"

#define HP_BASE      0xfeb00000ul
#define HP_SELECTOR  (HP_BASE + 0x0)
#define HP_STATUS    (HP_BASE + 0x4)   /* read: status; write: command */
#define HP_EVENTS    (HP_BASE + 0x8)
#define HP_GSI       23

#define ST_ENABLED   0x01
#define ST_INSERTING 0x02
#define ST_REMOVING  0x04
#define CMD_ACK_INSERT 0x02
#define CMD_ACK_REMOVE 0x04
#define CMD_EJECT      0x08
#define EV_CPU_HOTPLUG 0x01

#define VEC_TICK     0x40
#define VEC_HOTPLUG  0x41
#define VEC_WAKE     0x42
#define VEC_HOST     0x50         /* 0x50-0x8f: sent by the host test to CPU 0, only counted (many */
#define VEC_HOST_N   64           /* vectors, so that closely spaced ones do not coalesce in IRR) */

#define MAX_CPUS     256          /* xAPIC IDs */
#define WORK         1000         /* per-CPU counter increments, at CPL 0 (emulated on PVM: ~10 ms) */
#define TICK_MS      10           /* the poll period: the event interrupt and the APs' IPIs wake the BSP sooner */
#define START_MS     5000
#define STOP_MS      5000

enum { ABSENT, STARTING, RUNNING, STOPPED };

struct cpu {
    volatile uint32_t state;
    volatile uint32_t stop;
    volatile uint32_t apic_id;   /* as the AP read it from its LAPIC */
    volatile uint32_t counter;
};
static struct cpu cpus[MAX_CPUS];

static volatile uint64_t ticks;
static volatile uint32_t interrupts, host_interrupts;
static unsigned max_cpus, online, ejected, events, operations;

static inline uint8_t mmio_read8(uint64_t a) { return *(volatile uint8_t *)a; }
static inline void mmio_write8(uint64_t a, uint8_t v) { *(volatile uint8_t *)a = v; }

static void on_tick(struct int_frame *f) { (void)f; ticks++; lapic_eoi(); }
static void on_hotplug(struct int_frame *f) { (void)f; interrupts++; lapic_eoi(); }
static void on_wake(struct int_frame *f) { (void)f; lapic_eoi(); }
static void on_host(struct int_frame *f) { (void)f; host_interrupts++; lapic_eoi(); }

#define FAIL(...) do { printf("hotplug: FAILED: " __VA_ARGS__); printf("\n"); debug_exit(EXIT_FAILURE_CODE); } while (0)

/* ---- The AP side. */

void ap_main(unsigned apic_id) {
    if (apic_id < MAX_CPUS) {
        struct cpu *c = &cpus[apic_id];
        c->apic_id = lapic_id();
        c->counter = 0;
        for (unsigned i = 0; i < WORK; i++) c->counter++;
        __atomic_store_n(&c->state, RUNNING, __ATOMIC_RELEASE);
        lapic_send_ipi(0, ICR_FIXED | ICR_ASSERT | VEC_WAKE);  /* wake the BSP */
        while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) { sti_hlt(); cli(); }
        __atomic_store_n(&c->state, STOPPED, __ATOMIC_RELEASE);
        lapic_send_ipi(0, ICR_FIXED | ICR_ASSERT | VEC_WAKE);
    }
    for (;;) { cli(); hlt(); }  /* until the VMM takes the CPU away */
}

/* ---- The BSP side. */

/* Halts until *state == want (the AP sends an IPI when it changes it) or
 * about ms milliseconds of ticks pass. */
static bool wait_state(volatile uint32_t *state, uint32_t want, unsigned ms) {
    uint64_t end = ticks + (ms + TICK_MS - 1) / TICK_MS;
    while (__atomic_load_n(state, __ATOMIC_ACQUIRE) != want) {
        if (ticks >= end) return false;
        sti_hlt();
        cli();
    }
    return true;
}

static uint8_t cpu_status(unsigned cpu) {
    mmio_write32(HP_SELECTOR, cpu);
    return mmio_read8(HP_STATUS);
}

static void cpu_command(unsigned cpu, uint8_t command) {
    mmio_write32(HP_SELECTOR, cpu);
    mmio_write8(HP_STATUS, command);
}

static void start_cpu(unsigned cpu) {
    struct cpu *c = &cpus[cpu];
    if (c->state == RUNNING) {
        printf("hotplug: cpu %u already online\n", cpu);
        return;
    }
    c->stop = 0;
    c->apic_id = ~0u;
    __atomic_store_n(&c->state, STARTING, __ATOMIC_RELEASE);
    smp_start_ap(cpu);
    if (!wait_state(&c->state, RUNNING, 2 * TICK_MS)) {
        smp_send_startup(cpu);  /* as the MP specification asks, if the first did not land */
        if (!wait_state(&c->state, RUNNING, START_MS)) FAIL("cpu %u did not start within 5 s", cpu);
    }
    if (c->apic_id != cpu) FAIL("cpu %u reports APIC ID %u", cpu, c->apic_id);
    online++;
    printf("hotplug: cpu %u online work=%u\n", cpu, c->counter);
}

static void eject_cpu(unsigned cpu) {
    struct cpu *c = &cpus[cpu];
    if (c->state == RUNNING) {
        __atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
        lapic_send_ipi(cpu, ICR_FIXED | ICR_ASSERT | VEC_WAKE);
        if (!wait_state(&c->state, STOPPED, STOP_MS)) FAIL("cpu %u did not stop within 5 s", cpu);
    }
    /* STOPPED: it only runs cli; hlt from now on. Never started (or
     * STARTING after a failure): it waits for SIPI and runs nothing. */
    cpu_command(cpu, CMD_EJECT);
    uint8_t status = mmio_read8(HP_STATUS);  /* selector still names cpu */
    if (status & ST_ENABLED) FAIL("cpu %u still enabled after eject (status 0x%x)", cpu, status);
    c->state = ABSENT;
    ejected++;
    printf("hotplug: cpu %u ejected\n", cpu);
}

/* The AML's CSCN: for every CPU, act on INSERTING, then on REMOVING. */
static void scan(void) {
    for (unsigned cpu = 0; cpu < max_cpus; cpu++) {
        uint8_t status = cpu_status(cpu);
        if (status & ST_INSERTING) {
            cpu_command(cpu, CMD_ACK_INSERT);
            if (cpu != 0) {
                start_cpu(cpu);
                operations++;
            }
        }
        if (status & ST_REMOVING) {
            cpu_command(cpu, CMD_ACK_REMOVE);
            if (cpu == 0) {
                printf("hotplug: cpu 0 removal refused\n");
            } else {
                eject_cpu(cpu);
                operations++;
            }
        }
    }
}

/* The unsigned value after "<key>=" in the command line, or fallback. */
static unsigned option(const char *cmdline, const char *key, unsigned fallback) {
    size_t n = strlen(key);
    for (const char *p = cmdline; *p; p++) {
        if ((p == cmdline || p[-1] == ' ') && strncmp(p, key, n) == 0 && p[n] == '=') {
            unsigned v = 0;
            for (p += n + 1; *p >= '0' && *p <= '9'; p++) v = v * 10 + (unsigned)(*p - '0');
            return v;
        }
    }
    return fallback;
}

/* Reads what the UART holds; true once a line "done" is complete. */
static bool done_requested(void) {
    static char line[16];
    static unsigned len;
    for (int i = 0; i < 64 && (inb(COM1 + 5) & 1); i++) {
        char ch = (char)inb(COM1);
        if (ch == '\n' || ch == '\r') {
            line[len] = 0;
            if (len == 4 && strcmp(line, "done") == 0) return true;
            len = 0;
        } else if (len < sizeof line - 1) {
            line[len++] = ch;
        }
    }
    return false;
}

int main(void) {
    if (!fwcfg_present()) FAIL("no fw_cfg");
    if (lapic_id() != 0) FAIL("the BSP has APIC ID %u", lapic_id());
    unsigned boot_cpus = fwcfg_u16(FW_CFG_NB_CPUS);
    max_cpus = fwcfg_u16(FW_CFG_MAX_CPUS);
    if (boot_cpus == 0) boot_cpus = 1;
    if (max_cpus < boot_cpus) max_cpus = boot_cpus;
    printf("hotplug: cpus %u, max cpus %u\n", boot_cpus, max_cpus);
    if (max_cpus > MAX_CPUS) max_cpus = MAX_CPUS;

    static char cmdline[256];
    fwcfg_cmdline(cmdline, sizeof cmdline);
    unsigned target_ops = option(cmdline, "hotplug.ops", 0);
    unsigned timeout_s = option(cmdline, "hotplug.timeout", 300);

    /* The block must be there: CPU 0 ENABLED, reserved status bits 0
     * (an unclaimed address reads all ones). */
    uint8_t status0 = cpu_status(0);
    if ((status0 & 0xf8) || !(status0 & ST_ENABLED))
        FAIL("no CPU hot-plug registers at 0xfeb00000 (cpu 0 status 0x%x)", status0);

    pic_mask_all();
    lapic_enable();
    irq_register(VEC_TICK, on_tick);
    irq_register(VEC_HOTPLUG, on_hotplug);
    irq_register(VEC_WAKE, on_wake);
    for (unsigned v = VEC_HOST; v < VEC_HOST + VEC_HOST_N; v++) irq_register(v, on_host);
    if (ioapic_pin_count() > HP_GSI) ioapic_route(HP_GSI, VEC_HOTPLUG, 0, 0);
    lapic_timer_periodic(VEC_TICK, TICK_MS * 1000000, 1);  /* the timer counts at 1 GHz under KVM */
    cpus[0].state = RUNNING;

    /* Boot CPUs other than the BSP: start them, so the host can remove them. */
    for (unsigned cpu = 1; cpu < max_cpus; cpu++)
        if (cpu_status(cpu) & ST_ENABLED) start_cpu(cpu);
    printf("hotplug: ready\n");

    uint64_t deadline = ticks + (uint64_t)timeout_s * (1000 / TICK_MS);
    for (;;) {
        uint32_t pending = mmio_read32(HP_EVENTS);
        if (pending) {
            mmio_write32(HP_EVENTS, pending);  /* acknowledge before the scan */
            if (pending & EV_CPU_HOTPLUG) {
                events++;
                scan();
            }
        }
        if (done_requested() || (target_ops && operations >= target_ops)) break;
        if (ticks >= deadline) FAIL("no \"done\" within %u s", timeout_s);
        sti_hlt();
        cli();
    }
    lapic_timer_stop();
    printf("hotplug: done: %u online, %u ejected, %u events, %u interrupts, %u host\n", online, ejected, events, interrupts,
           host_interrupts);
    return EXIT_SUCCESS_CODE;
}
