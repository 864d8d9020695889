/*
 * runstat: runs a command and prints
 *     <ns to first stdout byte> <ns to exit> <peak RSS KiB> <exit status>
 * (-1 for the first figure when the command printed nothing).
 *
 * The benchmark harness measures through this rather than from Python:
 *  - ru_maxrss survives exec, so a child forked from a 14 MiB Python
 *    process reports at least 14 MiB whatever it then runs; forked from this
 *    small C process, the child's own peak is what is reported;
 *  - "exec to the guest's first instruction" is observed as the first byte
 *    the guest writes to its console arriving on the VMM's stdout, which
 *    excludes the VM's teardown (tearing down an in-kernel PIT and irqchip
 *    takes milliseconds on some hosts).
 *
 * `runstat --tsc-hz` instead prints the host's TSC rate, measured against
 * CLOCK_MONOTONIC_RAW over 200 ms, for converting guest-measured cycles.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static unsigned long long rdtsc(void) {
    unsigned lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (unsigned long long)hi << 32 | lo;
}

static int tsc_hz(void) {
    struct timespec a, b, pause = {0, 200000000};
    clock_gettime(CLOCK_MONOTONIC_RAW, &a);
    unsigned long long t0 = rdtsc();
    nanosleep(&pause, NULL);
    clock_gettime(CLOCK_MONOTONIC_RAW, &b);
    unsigned long long t1 = rdtsc();
    double seconds = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
    printf("%.0f\n", (t1 - t0) / seconds);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--tsc-hz") == 0) return tsc_hz();
    if (argc < 2) {
        fprintf(stderr, "usage: runstat command [args...]\n");
        return 2;
    }
    int out[2];
    if (pipe(out) < 0) { perror("pipe"); return 2; }
    long long start = now_ns();
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        execvp(argv[1], argv + 1);
        perror("exec");
        _exit(127);
    }
    close(out[1]);
    long long first = -1;
    char buf[4096];
    ssize_t n;
    while ((n = read(out[0], buf, sizeof buf)) > 0) {
        if (first < 0) first = now_ns() - start;
    }
    int status;
    struct rusage usage;
    if (wait4(pid, &status, 0, &usage) < 0) { perror("wait4"); return 2; }
    long long total = now_ns() - start;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    printf("%lld %lld %ld %d\n", first, total, usage.ru_maxrss, code);
    return 0;
}
