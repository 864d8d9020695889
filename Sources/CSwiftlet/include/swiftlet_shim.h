/*
 * The C side of Swiftlet: the KVM API (vendored <linux/kvm.h>) and the few
 * things Swift cannot express or call directly.
 *
 *  - ioctl request numbers are function-like macros (_IOW(...)), which Swift
 *    does not import, so each one Swiftlet uses is re-exported as a constant;
 *  - ioctl(2) and syscall(2) are variadic, so each shape gets a wrapper;
 *  - the vCPU kick signal handler must be async-signal-safe and reach the
 *    interrupted thread's kvm_run, which needs a C thread-local;
 *  - futex(2), memfd_create(2), userfaultfd(2), eventfd(2) and epoll with
 *    its packed struct are wrapped so Swift sees plain integer arguments.
 *
 * Every wrapper returns what the underlying call returns and leaves errno
 * set, so the Swift layer turns -1 into an error naming the call.
 */
#ifndef SWIFTLET_SHIM_H
#define SWIFTLET_SHIM_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>
#include "swiftlet_kvm/kvm.h"

/* ---- ioctl ---------------------------------------------------------- */

/* KVM_RUN, inline so the Swift compiler can inline it into the vCPU loop,
 * which runs it once per guest exit. Returns 0 or -1 with errno. */
int ioctl(int fd, unsigned long request, ...);
static inline int swl_kvm_run(int vcpu_fd) { return ioctl(vcpu_fd, KVM_RUN, 0); }

/* ioctl(fd, request, arg) with a pointer argument. */
int swl_ioctl_ptr(int fd, unsigned long request, void *arg);
/* ioctl(fd, request, arg) with an integer argument (or none). */
int swl_ioctl_val(int fd, unsigned long request, unsigned long arg);

/* System ioctls (on /dev/kvm). */
static const unsigned long SWL_KVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long SWL_KVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long SWL_KVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long SWL_KVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long SWL_KVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
static const unsigned long SWL_KVM_GET_MSR_INDEX_LIST = KVM_GET_MSR_INDEX_LIST;

/* VM ioctls. */
static const unsigned long SWL_KVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long SWL_KVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long SWL_KVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
static const unsigned long SWL_KVM_SET_IDENTITY_MAP_ADDR = KVM_SET_IDENTITY_MAP_ADDR;
static const unsigned long SWL_KVM_CREATE_IRQCHIP = KVM_CREATE_IRQCHIP;
static const unsigned long SWL_KVM_CREATE_PIT2 = KVM_CREATE_PIT2;
static const unsigned long SWL_KVM_IRQ_LINE = KVM_IRQ_LINE;
static const unsigned long SWL_KVM_SIGNAL_MSI = KVM_SIGNAL_MSI;
static const unsigned long SWL_KVM_IRQFD = KVM_IRQFD;
static const unsigned long SWL_KVM_ENABLE_CAP = KVM_ENABLE_CAP;

/* vCPU ioctls. */
static const unsigned long SWL_KVM_RUN = KVM_RUN;
static const unsigned long SWL_KVM_GET_REGS = KVM_GET_REGS;
static const unsigned long SWL_KVM_SET_REGS = KVM_SET_REGS;
static const unsigned long SWL_KVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long SWL_KVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long SWL_KVM_GET_FPU = KVM_GET_FPU;
static const unsigned long SWL_KVM_SET_FPU = KVM_SET_FPU;
static const unsigned long SWL_KVM_SET_CPUID2 = KVM_SET_CPUID2;
static const unsigned long SWL_KVM_GET_MSRS = KVM_GET_MSRS;
static const unsigned long SWL_KVM_SET_MSRS = KVM_SET_MSRS;
static const unsigned long SWL_KVM_GET_MP_STATE = KVM_GET_MP_STATE;
static const unsigned long SWL_KVM_SET_MP_STATE = KVM_SET_MP_STATE;
static const unsigned long SWL_KVM_TRANSLATE = KVM_TRANSLATE;
static const unsigned long SWL_KVM_INTERRUPT = KVM_INTERRUPT;
static const unsigned long SWL_KVM_NMI = KVM_NMI;
static const unsigned long SWL_KVM_GET_VCPU_EVENTS = KVM_GET_VCPU_EVENTS;
static const unsigned long SWL_KVM_SET_VCPU_EVENTS = KVM_SET_VCPU_EVENTS;
static const unsigned long SWL_KVM_GET_LAPIC = KVM_GET_LAPIC;
static const unsigned long SWL_KVM_SET_LAPIC = KVM_SET_LAPIC;

/* ---- variable-length KVM structures -------------------------------- */

/* struct kvm_cpuid2 and struct kvm_msrs end in flexible arrays; Swift
 * allocates them through these helpers so the size arithmetic lives here. */
size_t swl_kvm_cpuid2_size(uint32_t entries);
size_t swl_kvm_msrs_size(uint32_t entries);
struct kvm_cpuid_entry2 *swl_kvm_cpuid2_entries(struct kvm_cpuid2 *cpuid);
struct kvm_msr_entry *swl_kvm_msrs_entries(struct kvm_msrs *msrs);

/* ---- the vCPU kick --------------------------------------------------- */

/*
 * A vCPU thread publishes its kvm_run mapping with swl_kick_set_thread_run()
 * before its first KVM_RUN. The kick signal's handler then sets
 * run->immediate_exit on whichever vCPU thread it interrupts: if the signal
 * lands inside KVM_RUN, the ioctl returns EINTR; if it lands just before,
 * immediate_exit makes the next KVM_RUN return EINTR at once. Either way the
 * thread gets back to its request check, so no kick is lost.
 */
int swl_kick_signal_number(void);
int swl_kick_install_handler(void);
void swl_kick_set_thread_run(struct kvm_run *run);
/* Unblocks the kick signal on the calling thread (vCPU threads only). */
int swl_kick_unblock_on_this_thread(void);
/* Blocks the kick signal on the calling thread (every non-vCPU thread). */
int swl_kick_block_on_this_thread(void);

/* A CLOCK_MONOTONIC timer whose expiry sends the kick signal to one thread
 * (SIGEV_THREAD_ID): the LAPIC timer of a userspace interrupt controller
 * kicks its own vCPU out of KVM_RUN with it. */
/* The handle is timer_t carried as an integer: glibc's first timer ID is 0,
 * which as a pointer would read as NULL. */
int swl_thread_timer_create(pid_t tid, intptr_t *timer);
/* Arms the timer for an absolute CLOCK_MONOTONIC time; 0 disarms it. */
int swl_thread_timer_arm(intptr_t timer, int64_t deadline_ns);
int swl_thread_timer_delete(intptr_t timer);

/* ---- futex ------------------------------------------------------------ */

/* FUTEX_WAIT_PRIVATE: sleeps while *addr == expected; timeout_ns < 0 means
 * forever. Returns 0, or -1 with errno (EAGAIN: value changed, ETIMEDOUT,
 * EINTR). */
int swl_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns);
/* FUTEX_WAKE_PRIVATE: wakes up to count waiters; returns how many woke. */
int swl_futex_wake(uint32_t *addr, int count);

static inline uint32_t swl_atomic_load_u32(uint32_t *p) {
  return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}
static inline void swl_atomic_store_u32(uint32_t *p, uint32_t v) {
  __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}
static inline uint32_t swl_atomic_exchange_u32(uint32_t *p, uint32_t v) {
  return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
static inline uint32_t swl_atomic_fetch_add_u32(uint32_t *p, uint32_t v) {
  return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static inline uint32_t swl_atomic_fetch_or_u32(uint32_t *p, uint32_t v) {
  return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST);
}
static inline uint32_t swl_atomic_fetch_and_u32(uint32_t *p, uint32_t v) {
  return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST);
}
static inline int swl_atomic_cas_u32(uint32_t *p, uint32_t *expected, uint32_t desired) {
  return __atomic_compare_exchange_n(p, expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

/* ---- other system calls ----------------------------------------------- */

int swl_memfd_create(const char *name, unsigned int flags);
int swl_eventfd(unsigned int initval, int flags);
int swl_userfaultfd(int flags);
pid_t swl_gettid(void);
int swl_thread_set_name(const char *name);

/* epoll: struct epoll_event is packed on x86-64, so Swift sees only these.
 * The constants mirror <sys/epoll.h> and <sys/eventfd.h>, which Swift's
 * Glibc module does not export. */
static const uint32_t SWL_EPOLLIN = 0x001;
static const uint32_t SWL_EPOLLERR = 0x008;
static const uint32_t SWL_EPOLLHUP = 0x010;
static const int SWL_EPOLL_CTL_ADD = 1;
static const int SWL_EPOLL_CTL_DEL = 2;
static const int SWL_EFD_CLOEXEC = 02000000;
static const int SWL_EFD_NONBLOCK = 04000;
int swl_epoll_create(void);
int swl_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
/* Waits and unpacks up to max events into parallel arrays. */
int swl_epoll_wait(int epfd, uint64_t *data, uint32_t *events, int max, int timeout_ms);

#endif
