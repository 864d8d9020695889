/*
 * kvm-floor — the smallest KVM run loop that boots Swiftlet's test guests.
 *
 * It is the "floor" of the exit-cost and start-up benchmarks: whatever
 * Swiftlet spends above this is overhead of its own. So it does only what
 * the benchmark guests and the guest toolkit's own testing need, and no
 * more (see docs/boot-protocol.md for the machine it imitates):
 *
 *   kvm-floor [--cpus N] [--memory MIB] [--irqchip] guest.elf
 *
 * - ELF64 PT_LOAD segments are copied to p_paddr.
 * - An image with a Multiboot v1 header (flag 16) starts at the header's
 *   entry_addr in 32-bit protected mode, EAX = 0x2BADB002, EBX = 0x6000
 *   (a zeroed information structure); otherwise the direct 64-bit entry
 *   state of the boot protocol (GDT 0x500, page tables 0x9000, RSP 0x80000).
 * - Devices: COM1 output (THR bytes to stdout; LSR reads 0x60, other UART
 *   reads 0); port 0x80 ignored; debug exit 0xf4 -> exit((v << 1) | 1);
 *   0x34 to port 0x600 -> exit(0); a tiny fw_cfg (signature, RAM size and
 *   CPU count, so the smp guest finds N); every other port and MMIO address
 *   reads all ones and ignores writes.
 * - --irqchip: in-kernel LAPIC/IOAPIC/PIC and PIT, one thread per vCPU.
 * Exit statuses for failures match `swiftlet run` (6, 8, 10, 12, 14).
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HOLE 0xC0000000ull
static int kvm, vm, ncpus = 1, irqchip, run_size;
static uint64_t ram;
static uint8_t *mem;

__attribute__((noreturn)) static void die(int status, const char *what) { perror(what); exit(status); }
static uint8_t *gpa(uint64_t a) { return mem + (a >= HOLE ? a - (1ull << 32) + HOLE : a); }

static uint16_t fwcfg_key; static uint32_t fwcfg_off;
static uint8_t fwcfg_byte(void) {
    uint8_t item[8] = {0}; uint32_t len = 0;
    if (fwcfg_key == 0x00) { memcpy(item, "QEMU", 4); len = 4; }
    if (fwcfg_key == 0x03) { memcpy(item, &ram, 8); len = 8; }
    if (fwcfg_key == 0x05) { uint16_t n = ncpus; memcpy(item, &n, 2); len = 2; }
    return fwcfg_off < len ? item[fwcfg_off++] : 0;
}

static void port_io(struct kvm_run *r) {
    uint8_t *d = (uint8_t *)r + r->io.data_offset;
    for (uint32_t i = 0; i < r->io.count; i++, d += r->io.size) {
        uint16_t p = r->io.port;
        if (r->io.direction == KVM_EXIT_IO_OUT) {
            if (p == 0x3f8) putchar(*d);
            else if (p == 0xf4) exit((d[0] << 1 | 1) & 0xff);
            else if (p == 0x600 && d[0] == 0x34) exit(0);
            else if (p == 0x510) { fwcfg_key = d[0] | (r->io.size > 1 ? d[1] << 8 : 0); fwcfg_off = 0; }
        } else if (p >= 0x3f8 && p <= 0x3ff) {
            memset(d, 0, r->io.size); d[0] = p == 0x3fd ? 0x60 : 0;
        } else if (p == 0x511) {
            d[0] = fwcfg_byte();
        } else {
            memset(d, 0xff, r->io.size);
        }
    }
}

__attribute__((noreturn)) static void diagnose(int fd, const char *what, int status) {
    struct kvm_regs g;
    fflush(stdout);
    ioctl(fd, KVM_GET_REGS, &g);
    fprintf(stderr, "kvm-floor: %s at rip 0x%llx\n", what, (unsigned long long)g.rip);
    exit(status);
}

static void *vcpu_loop(void *arg) {
    int fd = (int)(long)arg;
    struct kvm_run *r = mmap(0, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (r == MAP_FAILED) die(6, "mmap kvm_run");
    for (;;) {
        if (ioctl(fd, KVM_RUN, 0) < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;  /* an AP leaving wait-for-SIPI */
            die(6, "KVM_RUN");
        }
        switch (r->exit_reason) {
        case KVM_EXIT_IO: port_io(r); break;
        case KVM_EXIT_MMIO: if (!r->mmio.is_write) memset(r->mmio.data, 0xff, r->mmio.len); break;
        case KVM_EXIT_SHUTDOWN: diagnose(fd, "triple fault (KVM_EXIT_SHUTDOWN)", 8);
        case KVM_EXIT_INTERNAL_ERROR:
            fprintf(stderr, "kvm-floor: internal error, suberror %u, data", r->internal.suberror);
            for (uint32_t i = 0; i < r->internal.ndata && i < 16; i++)
                fprintf(stderr, " 0x%llx", (unsigned long long)r->internal.data[i]);
            fputc('\n', stderr);
            diagnose(fd, "KVM internal error", 10);
        case KVM_EXIT_FAIL_ENTRY: diagnose(fd, "VM entry failed", 12);
        default: {
            char msg[64];
            snprintf(msg, sizeof msg, "unhandled exit reason %u", r->exit_reason);
            diagnose(fd, msg, 14);
        }
        }
    }
}

/* Returns the 32-bit entry address of a Multiboot header with flag 16, or 0. */
static uint32_t multiboot_entry(const uint8_t *img, size_t size) {
    for (size_t o = 0; o + 32 <= size && o < 8192; o += 4) {
        const uint32_t *h = (const uint32_t *)(img + o);
        if (h[0] == 0x1BADB002 && h[0] + h[1] + h[2] == 0 && (h[1] & 0x10000)) return h[7];
    }
    return 0;
}

static void set_boot_state(int fd, uint64_t entry, uint32_t mb_entry) {
    struct kvm_sregs s;
    struct kvm_regs g = { .rflags = 2 };
    if (ioctl(fd, KVM_GET_SREGS, &s) < 0) die(6, "KVM_GET_SREGS");
    struct kvm_segment code = { .limit = 0xffffffff, .selector = 0x08, .type = 11, .present = 1, .s = 1, .l = 1, .g = 1 };
    struct kvm_segment data = { .limit = 0xffffffff, .selector = 0x10, .type = 3, .present = 1, .s = 1, .db = 1, .g = 1 };
    s.gdt.base = 0x500; s.gdt.limit = 47;
    s.idt.base = 0; s.idt.limit = 0;
    if (mb_entry) {
        code.selector = 0x18; code.l = 0; code.db = 1;
        s.cr0 = 0x11; s.cr3 = 0; s.cr4 = 0; s.efer = 0;  /* PE|ET, paging off */
        g.rip = mb_entry; g.rax = 0x2BADB002; g.rbx = 0x6000;
    } else {
        s.cr0 = 0x80010033; s.cr3 = 0x9000; s.cr4 = 0x620; s.efer = 0x500;
        g.rip = entry; g.rsp = 0x80000;
    }
    s.cs = code; s.ds = s.es = s.fs = s.gs = s.ss = data;
    if (ioctl(fd, KVM_SET_SREGS, &s) < 0) die(6, "KVM_SET_SREGS");
    if (ioctl(fd, KVM_SET_REGS, &g) < 0) die(6, "KVM_SET_REGS");
}

static void usage(void) {
    fprintf(stderr, "usage: kvm-floor [--cpus N] [--memory MIB] [--irqchip] guest.elf\n");
    exit(2);
}

int main(int argc, char **argv) {
    uint64_t mib = 128;
    int i;
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--cpus") && i + 1 < argc) ncpus = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--memory") && i + 1 < argc) mib = strtoull(argv[++i], 0, 0);
        else if (!strcmp(argv[i], "--irqchip")) irqchip = 1;
        else usage();
    }
    if (i + 1 != argc || ncpus < 1 || mib < 2 || (ncpus > 1 && !irqchip)) usage();
    ram = mib << 20;
    setvbuf(stdout, 0, _IOLBF, 0);

    /* Read the image. */
    int f = open(argv[i], O_RDONLY);
    struct stat st;
    if (f < 0 || fstat(f, &st) < 0) die(2, argv[i]);
    uint8_t *img = mmap(0, st.st_size, PROT_READ, MAP_PRIVATE, f, 0);
    Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
    if (img == MAP_FAILED || st.st_size < (off_t)sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) ||
        eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_phoff + eh->e_phnum * sizeof(Elf64_Phdr) > (uint64_t)st.st_size) {
        fprintf(stderr, "kvm-floor: %s: not an ELF64 image\n", argv[i]);
        return 2;
    }

    if ((kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC)) < 0) die(3, "/dev/kvm");
    if ((vm = ioctl(kvm, KVM_CREATE_VM, 0)) < 0) die(3, "KVM_CREATE_VM");
    if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0) die(6, "KVM_SET_TSS_ADDR");

    /* RAM: below the MMIO hole, the rest from 4 GiB. */
    mem = mmap(0, ram, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) die(6, "mmap guest RAM");
    uint64_t low = ram < HOLE ? ram : HOLE;
    struct kvm_userspace_memory_region r0 = { 0, 0, 0, low, (uint64_t)mem };
    struct kvm_userspace_memory_region r1 = { 1, 0, 1ull << 32, ram - low, (uint64_t)mem + low };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r0) < 0) die(6, "KVM_SET_USER_MEMORY_REGION");
    if (ram > low && ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r1) < 0) die(6, "KVM_SET_USER_MEMORY_REGION");

    for (int k = 0; k < eh->e_phnum; k++) {
        Elf64_Phdr *ph = (Elf64_Phdr *)(img + eh->e_phoff) + k;
        if (ph->p_type != PT_LOAD) continue;
        if (ph->p_paddr < 0x100000 || ph->p_paddr + ph->p_memsz > low || ph->p_filesz > ph->p_memsz ||
            ph->p_offset + ph->p_filesz > (uint64_t)st.st_size) {
            fprintf(stderr, "kvm-floor: segment %d does not fit\n", k);
            return 2;
        }
        memcpy(gpa(ph->p_paddr), img + ph->p_offset, ph->p_filesz);  /* the rest is already zero */
    }
    uint32_t mb = multiboot_entry(img, st.st_size);

    /* GDT (null, code64, data, code32, user data, user code64) and identity page tables. */
    static const uint64_t gdt[6] = { 0, 0x00af9b000000ffff, 0x00cf93000000ffff, 0x00cf9b000000ffff,
                                     0x00cff3000000ffff, 0x00affb000000ffff };
    memcpy(gpa(0x500), gdt, sizeof gdt);
    uint64_t *pml4 = (uint64_t *)gpa(0x9000), *pdpt = (uint64_t *)gpa(0xa000), *pd = (uint64_t *)gpa(0xb000);
    pml4[0] = 0xa000 | 7;
    for (int k = 0; k < 4; k++) pdpt[k] = (0xb000 + k * 0x1000) | 7;
    for (uint64_t k = 0; k < 2048; k++) pd[k] = k << 21 | 0x87;  /* present, writable, user, 2 MiB */

    if (irqchip) {
        struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
        if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) die(6, "KVM_CREATE_IRQCHIP");
        if (ioctl(vm, KVM_CREATE_PIT2, &pit) < 0) die(6, "KVM_CREATE_PIT2");
    }

    /* The supported CPUID, so that KVM accepts EFER.LME (hardware KVM checks it). */
    struct { struct kvm_cpuid2 c; struct kvm_cpuid_entry2 e[256]; } cpuid = { .c.nent = 256 };
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) < 0) die(6, "KVM_GET_SUPPORTED_CPUID");
    if ((run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0)) < 0) die(6, "KVM_GET_VCPU_MMAP_SIZE");
    int fds[ncpus];
    for (int k = 0; k < ncpus; k++) {
        if ((fds[k] = ioctl(vm, KVM_CREATE_VCPU, k)) < 0) die(6, "KVM_CREATE_VCPU");
        if (ioctl(fds[k], KVM_SET_CPUID2, &cpuid) < 0) die(6, "KVM_SET_CPUID2");
    }
    set_boot_state(fds[0], eh->e_entry, mb);  /* APs wait for INIT/SIPI in the in-kernel LAPIC */
    for (int k = 1; k < ncpus; k++) {
        pthread_t t;
        if (pthread_create(&t, 0, vcpu_loop, (void *)(long)fds[k])) die(6, "pthread_create");
    }
    vcpu_loop((void *)(long)fds[0]);
}
