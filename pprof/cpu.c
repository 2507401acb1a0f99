/* SPDX-License-Identifier: PostgreSQL
 *
 * Per-thread CPU-clock timers, SIGPROF handler and the CPU profile: see cpu.h.
 */
#include "pprof/cpu.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/mem.h"
#include "pprof/pbuild.h"
#include "pprof/stack.h"
#include "pprof/threads.h"

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

#define PERIOD_NS (1000000000 / RP_CPU_HZ)

typedef struct cpu_rec {
    _Atomic int ready;
    int depth;
    int64_t count; /* 1 + timer overruns */
    uintptr_t pcs[RP_STACK_MAX];
} cpu_rec;

static pthread_mutex_t cpu_lock = PTHREAD_MUTEX_INITIALIZER; /* timers list, start/finish */
static _Atomic bool cpu_on;
static cpu_rec *recs;
static size_t recs_cap; /* the buffer's size in records */
static _Atomic size_t widx;
static _Atomic int64_t lost;
static _Atomic int in_handler;
static int *timers;
static size_t ntimers, cap_timers;
static struct timespec started;

static void on_sigprof(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    atomic_fetch_add(&in_handler, 1);
    if (atomic_load(&cpu_on) && si->si_code == SI_TIMER) {
        size_t i = atomic_fetch_add(&widx, 1);
        if (i < recs_cap) {
            cpu_rec *r = &recs[i];
            r->depth = rp_stack_from_signal(uc, r->pcs, RP_STACK_MAX);
            r->count = 1 + (si->si_overrun > 0 ? si->si_overrun : 0);
            atomic_store_explicit(&r->ready, 1, memory_order_release);
        } else {
            atomic_fetch_add(&lost, 1);
        }
    }
    atomic_fetch_sub(&in_handler, 1);
    errno = saved;
}

/* Arm a 100 Hz timer on tid's CPU clock; first expiry random in (0, 10 ms] like Go. */
static void arm_thread(pid_t tid)
{
    struct sigevent sev;
    int id;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGPROF;
    sev.sigev_notify_thread_id = tid;
    clockid_t clk = (clockid_t)((~(unsigned)tid << 3) | 6); /* CPUCLOCK_SCHED, per thread */
    if (syscall(SYS_timer_create, clk, &sev, &id) != 0)
        return;
    struct itimerspec its = {.it_interval = {0, PERIOD_NS},
                             .it_value = {0, 1 + (long)((unsigned)rand() % PERIOD_NS)}};
    syscall(SYS_timer_settime, id, 0, &its, NULL);
    pthread_mutex_lock(&cpu_lock);
    rp_grow((void **)&timers, &cap_timers, ntimers + 1, sizeof(int));
    timers[ntimers++] = id;
    pthread_mutex_unlock(&cpu_lock);
}

static void on_thread_start(void)
{
    if (atomic_load(&cpu_on))
        arm_thread(gettid());
}

static void arm_all(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9')
            arm_thread((pid_t)atoi(e->d_name));
    if (d)
        closedir(d);
}

static int install_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigprof;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGRTMIN + 3); /* the thread-dump signal */
    return sigaction(SIGPROF, &sa, NULL) == 0 ? 0 : -errno;
}

int rp_cpu_start(int seconds)
{
    bool off = false;
    if (!atomic_compare_exchange_strong(&cpu_on, &off, true))
        return -EBUSY;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    size_t cap = (size_t)(ncpu > 0 ? ncpu : 1) * RP_CPU_HZ * (size_t)(seconds + 1) * 5 / 4 + 256;
    void *p = mmap(NULL, cap * sizeof(cpu_rec), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) {
        atomic_store(&cpu_on, false);
        return -ENOMEM;
    }
    recs = p;
    recs_cap = cap;
    atomic_store(&widx, 0);
    atomic_store(&lost, 0);
    clock_gettime(CLOCK_MONOTONIC, &started);
    int rc = install_handler();
    if (rc < 0)
        return rc;
    __atomic_store_n(&rp_threads_start_hook, on_thread_start, __ATOMIC_RELEASE);
    arm_all();
    return 0;
}

bool rp_cpu_active(void)
{
    return atomic_load(&cpu_on);
}

/* Delete every timer, then ignore SIGPROF (its default action kills the process). */
static void disarm(void)
{
    pthread_mutex_lock(&cpu_lock);
    for (size_t i = 0; i < ntimers; i++)
        syscall(SYS_timer_delete, timers[i]);
    ntimers = 0;
    pthread_mutex_unlock(&cpu_lock);
    signal(SIGPROF, SIG_IGN);
    while (atomic_load(&in_handler) > 0)
        sched_yield();
}

static int build(rp_buf *out, int64_t duration_ns)
{
    rp_pbuild *pb = rp_pbuild_new();
    uint64_t locs[RP_STACK_MAX];
    rp_pbuild_sample_type(pb, "samples", "count");
    rp_pbuild_sample_type(pb, "cpu", "nanoseconds");
    rp_pbuild_period(pb, "cpu", "nanoseconds", PERIOD_NS);
    rp_pbuild_duration(pb, duration_ns);
    size_t n = atomic_load(&widx);
    for (size_t i = 0; i < n && i < recs_cap; i++) {
        cpu_rec *r = &recs[i];
        if (!atomic_load_explicit(&r->ready, memory_order_acquire) || r->depth <= 0)
            continue;
        int64_t v[2] = {r->count, r->count * PERIOD_NS};
        size_t nl = rp_pbuild_stack(pb, r->pcs, (size_t)r->depth, true, locs);
        rp_pbuild_sample(pb, locs, nl, v);
    }
    int64_t nlost = atomic_load(&lost);
    if (nlost > 0) {
        int64_t v[2] = {nlost, nlost * PERIOD_NS};
        locs[0] = rp_pbuild_loc_named(pb, "lost_samples");
        rp_pbuild_sample(pb, locs, 1, v);
    }
    int rc = rp_pbuild_finish(pb, out);
    rp_pbuild_free(pb);
    return rc;
}

int rp_cpu_finish(rp_buf *out)
{
    if (!atomic_load(&cpu_on))
        return -EINVAL;
    disarm();
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ns =
        (int64_t)(now.tv_sec - started.tv_sec) * 1000000000 + (now.tv_nsec - started.tv_nsec);
    int rc = build(out, ns);
    munmap(recs, recs_cap * sizeof(cpu_rec));
    recs = NULL;
    recs_cap = 0;
    atomic_store(&cpu_on, false);
    return rc;
}
