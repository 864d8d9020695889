#define _GNU_SOURCE
#include "swiftlet_shim.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The constants Swift sees must match the C library's. */
_Static_assert(EPOLLIN == 0x001 && EPOLLERR == 0x008 && EPOLLHUP == 0x010, "epoll events");
_Static_assert(EPOLL_CTL_ADD == 1 && EPOLL_CTL_DEL == 2, "epoll ops");
_Static_assert(EFD_CLOEXEC == 02000000 && EFD_NONBLOCK == 04000, "eventfd flags");

int swl_ioctl_ptr(int fd, unsigned long request, void *arg) {
  return ioctl(fd, request, arg);
}

int swl_ioctl_val(int fd, unsigned long request, unsigned long arg) {
  return ioctl(fd, request, arg);
}

size_t swl_kvm_cpuid2_size(uint32_t entries) {
  return sizeof(struct kvm_cpuid2) + (size_t)entries * sizeof(struct kvm_cpuid_entry2);
}

size_t swl_kvm_msrs_size(uint32_t entries) {
  return sizeof(struct kvm_msrs) + (size_t)entries * sizeof(struct kvm_msr_entry);
}

struct kvm_cpuid_entry2 *swl_kvm_cpuid2_entries(struct kvm_cpuid2 *cpuid) {
  return cpuid->entries;
}

struct kvm_msr_entry *swl_kvm_msrs_entries(struct kvm_msrs *msrs) {
  return msrs->entries;
}

/* ---- kick ---------------------------------------------------------------- */

/* The kvm_run of the vCPU that runs on this thread, or NULL. Only this thread
 * writes it and only its own signal handler reads it. */
static __thread struct kvm_run *volatile swl_thread_run;

int swl_kick_signal_number(void) {
  /* SIGRTMIN is a function call in glibc; the first few real-time signals
   * may be taken by the C library itself, which SIGRTMIN already skips. */
  return SIGRTMIN + 1;
}

static void swl_kick_handler(int signo) {
  (void)signo;
  struct kvm_run *run = swl_thread_run;
  if (run) {
    /* A plain store is enough: KVM reads it on entry to KVM_RUN, which this
     * thread performs after the handler returns. */
    run->immediate_exit = 1;
  }
}

int swl_kick_install_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = swl_kick_handler;
  /* No SA_RESTART: an interrupted KVM_RUN must return EINTR. */
  sa.sa_flags = 0;
  sigemptyset(&sa.sa_mask);
  return sigaction(swl_kick_signal_number(), &sa, NULL);
}

void swl_kick_set_thread_run(struct kvm_run *run) {
  swl_thread_run = run;
}

static int swl_kick_mask(int how) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, swl_kick_signal_number());
  int rc = pthread_sigmask(how, &set, NULL);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  return 0;
}

int swl_kick_unblock_on_this_thread(void) { return swl_kick_mask(SIG_UNBLOCK); }
int swl_kick_block_on_this_thread(void) { return swl_kick_mask(SIG_BLOCK); }

int swl_thread_timer_create(pid_t tid, intptr_t *timer) {
  struct sigevent sev;
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = swl_kick_signal_number();
  sev._sigev_un._tid = tid;
  timer_t id;
  if (timer_create(CLOCK_MONOTONIC, &sev, &id) != 0) return -1;
  *timer = (intptr_t)id;
  return 0;
}

int swl_thread_timer_arm(intptr_t timer, int64_t deadline_ns) {
  struct itimerspec spec;
  memset(&spec, 0, sizeof spec);
  if (deadline_ns > 0) {
    spec.it_value.tv_sec = (time_t)(deadline_ns / 1000000000);
    spec.it_value.tv_nsec = (long)(deadline_ns % 1000000000);
  }
  return timer_settime((timer_t)timer, TIMER_ABSTIME, &spec, NULL);
}

int swl_thread_timer_delete(intptr_t timer) { return timer_delete((timer_t)timer); }

/* ---- futex --------------------------------------------------------------- */

int swl_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns) {
  struct timespec ts, *tp = NULL;
  if (timeout_ns >= 0) {
    ts.tv_sec = (time_t)(timeout_ns / 1000000000);
    ts.tv_nsec = (long)(timeout_ns % 1000000000);
    tp = &ts;
  }
  long rc = syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, tp, NULL, 0);
  return rc < 0 ? -1 : 0;
}

int swl_futex_wake(uint32_t *addr, int count) {
  return (int)syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
}

/* ---- other system calls -------------------------------------------------- */

int swl_memfd_create(const char *name, unsigned int flags) {
  return (int)syscall(SYS_memfd_create, name, flags);
}

int swl_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }

int swl_userfaultfd(int flags) { return (int)syscall(SYS_userfaultfd, flags); }

pid_t swl_gettid(void) { return (pid_t)syscall(SYS_gettid); }

int swl_thread_set_name(const char *name) {
  int rc = pthread_setname_np(pthread_self(), name);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  return 0;
}

int swl_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int swl_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.u64 = data;
  return epoll_ctl(epfd, op, fd, &ev);
}

int swl_epoll_wait(int epfd, uint64_t *data, uint32_t *events, int max, int timeout_ms) {
  struct epoll_event evs[32];
  if (max > 32) max = 32;
  int n = epoll_wait(epfd, evs, max, timeout_ms);
  for (int i = 0; i < n; i++) {
    data[i] = evs[i].data.u64;
    events[i] = evs[i].events;
  }
  return n;
}
