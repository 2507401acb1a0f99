/* SPDX-License-Identifier: PostgreSQL
 *
 * Per-thread CPU-clock timers, SIGPROF handler and the CPU profile: see cpu.h.
 */
#include "pprof/cpu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/mem.h"
#include "common/tasks.h"
#include "pprof/pbuild.h"
#include "pprof/stack.h"
#include "pprof/threads.h"

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

typedef struct cpu_rec {
    _Atomic int ready;
    int depth;
    int fd;        /* the perf event that fired, or -1 */
    pid_t tid;     /* the thread a POSIX timer sampled (sigev_value), or 0 */
    int64_t count; /* periods: 1 + timer overruns, or see perf_periods */
    uintptr_t pcs[RP_STACK_MAX];
} cpu_rec;

static pthread_mutex_t cpu_lock = PTHREAD_MUTEX_INITIALIZER; /* timers list, start/finish */
static _Atomic bool cpu_on;
static _Atomic bool window_open; /* every thread armed: samples count from here */
static _Atomic bool arming;      /* new threads are armed (start .. disarm) */
static cpu_rec *recs;
static size_t recs_cap; /* the buffer's size in records */
static _Atomic size_t widx;
static _Atomic int64_t lost;
static _Atomic int in_handler;

/* How threads are sampled: perf's task-clock where the kernel lets us (an hrtimer that
 * runs while the thread runs: short bursts are sampled too), else a POSIX CPU-clock
 * timer (checked at the scheduler tick: a thread that runs in bursts shorter than a
 * tick rarely has its expiry noticed, and its CPU goes unsampled). */
typedef enum clock_kind { CLOCK_UNDECIDED, CLOCK_PERF, CLOCK_PERF_USER, CLOCK_TIMER } clock_kind;
static const char *const clock_names[] = {
    "none", "perf task-clock (user and kernel time)",
    "perf task-clock (user time: kernel.perf_event_paranoid keeps kernel time out)",
    "timer_create CPU-clock timers (tick-driven: short bursts go unsampled)"};
static clock_kind clock_used;
typedef struct armed {
    int id; /* a perf event's fd, or a POSIX timer id */
    bool perf;
    pid_t tid;    /* the thread it samples */
    int64_t done; /* the thread's CPU clock when the window closed; -1: unknown (exited) */
} armed;
static armed *timers;
static size_t ntimers, cap_timers, nfallback; /* nfallback: perf refused, timer used */
static struct timespec started, cpu_started, cpu_stopped;
static long period_ns = 1000000000 / RP_CPU_HZ; /* of the profile running */

/* How a perf event's samples are weighed, by fd. The event starts with a random first
 * period U, as the timers start at a random expiry (Go does the same), and its first
 * overflow sets the regular period P. A thread is owed floor((C + P - U) / P) periods
 * for C of its own CPU clock (the clock the process's CPU adds up) since the window
 * opened, on average C / P: a thread that runs less than a period is sampled with the
 * right probability instead of never. Each sample gets the periods owed since the
 * previous: mostly 1; more when the overflow was held off (interrupts off, a SIGPROF
 * still pending) or when the task-clock missed the kernel's switching to and from the
 * thread, which its CPU clock counts; 0 (no sample) when the clock is behind. What is
 * owed after a thread's last sample is counted when the profile is built. The host's
 * steal is in neither clock. */
typedef struct perf_credit {
    _Atomic bool phased;       /* the first overflow has set the regular period */
    _Atomic uint64_t credited; /* periods given to samples */
    int64_t base;              /* the thread's CPU clock when the window opened; 0: armed
                                * later; -1: unknown (it exited) */
    uint64_t phase;            /* P - U */
    size_t last;               /* when built: its thread's last record + 1, or 0 */
} perf_credit;
static perf_credit *credits;
static size_t credits_cap; /* entries: fds at or above it are sampled with weight 1 */

static int64_t ts_ns(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

/* Periods owed to the thread of k at clock now, in total. */
static uint64_t owed(const perf_credit *k, int64_t now)
{
    int64_t c = now > k->base ? now - k->base : 0;
    return ((uint64_t)c + k->phase) / (uint64_t)period_ns;
}

/* In the handler, for a perf event's overflow (also before the window opens): the first
 * one sets the regular period, then the periods this sample stands for (see
 * perf_credit). Setting the period restarts the count towards the next overflow, so this
 * comes first in the handler. */
static int64_t perf_periods(int fd)
{
    if (fd < 0 || (size_t)fd >= credits_cap)
        return 1;
    perf_credit *k = &credits[fd];
    if (!atomic_exchange(&k->phased, true)) {
        uint64_t period = (uint64_t)period_ns;
        ioctl(fd, PERF_EVENT_IOC_PERIOD, &period);
    }
    struct timespec now;
    if (!atomic_load(&window_open) || k->base < 0 ||
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now) != 0)
        return 1;
    uint64_t total = owed(k, ts_ns(&now));
    uint64_t before = atomic_load(&k->credited);
    if (total <= before)
        return 0;
    atomic_store(&k->credited, total); /* only this thread's handler writes it */
    return (int64_t)(total - before);
}

static void on_sigprof(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    atomic_fetch_add(&in_handler, 1);
    /* SI_TIMER from a POSIX timer; POLL_IN/POLL_HUP from a perf event's overflow */
    bool ours = si->si_code == SI_TIMER || si->si_code == POLL_IN || si->si_code == POLL_HUP;
    int64_t periods = 1;
    if (ours && si->si_code != SI_TIMER)
        periods = perf_periods(si->si_fd); /* before the unwinding: see perf_periods */
    else if (ours)
        periods = 1 + (si->si_overrun > 0 ? si->si_overrun : 0);
    if (atomic_load(&window_open) && ours && periods > 0) {
        size_t i = atomic_fetch_add(&widx, 1);
        if (i < recs_cap) {
            cpu_rec *r = &recs[i];
            r->depth = rp_stack_from_signal(uc, r->pcs, RP_STACK_MAX);
            r->count = periods;
            r->fd = si->si_code == SI_TIMER ? -1 : si->si_fd;
            r->tid = si->si_code == SI_TIMER ? (pid_t)si->si_value.sival_int : 0;
            atomic_store_explicit(&r->ready, 1, memory_order_release);
        } else {
            atomic_fetch_add(&lost, 1);
        }
    }
    atomic_fetch_sub(&in_handler, 1);
    errno = saved;
}

static void keep_locked(int id, bool perf, pid_t tid)
{
    rp_grow((void **)&timers, &cap_timers, ntimers + 1, sizeof(armed));
    timers[ntimers++] = (armed){id, perf, tid, -1};
}

/* A thread's CPU clock, read from any thread of the process; -1 once it has exited. */
static int64_t thread_cpu(pid_t tid)
{
    struct timespec t;
    clockid_t clk = (clockid_t)((~(unsigned)tid << 3) | 6); /* CPUCLOCK_SCHED, per thread */
    return clock_gettime(clk, &t) == 0 ? ts_ns(&t) : -1;
}

/* Each perf-sampled thread's CPU clock now: its credit's base when the window opens,
 * armed.done when it closes. Under cpu_lock. */
static void read_clocks(bool at_open)
{
    for (size_t i = 0; i < ntimers; i++) {
        if (!timers[i].perf)
            continue;
        int64_t c = thread_cpu(timers[i].tid);
        if (!at_open)
            timers[i].done = c;
        else if ((size_t)timers[i].id < credits_cap)
            credits[timers[i].id].base = c;
    }
}

/* A task-clock event on tid overflowing every 10 ms of its CPU, each overflow a SIGPROF
 * to tid. -errno when perf events are not allowed (perf_event_paranoid, seccomp). */
static int perf_open(pid_t tid, bool user_only)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.type = PERF_TYPE_SOFTWARE;
    a.config = PERF_COUNT_SW_TASK_CLOCK;
    a.sample_period = 1 + (uint64_t)((unsigned)rand() % (unsigned)period_ns); /* perf_credit */
    a.wakeup_events = 1;
    a.disabled = 1;
    a.exclude_kernel = user_only;
    a.exclude_hv = 1;
    int fd = (int)syscall(SYS_perf_event_open, &a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if ((size_t)fd < credits_cap)
        credits[fd].phase = (uint64_t)period_ns - a.sample_period;
    struct f_owner_ex owner = {F_OWNER_TID, tid};
    if (fcntl(fd, F_SETFL, O_ASYNC) < 0 || fcntl(fd, F_SETSIG, SIGPROF) < 0 ||
        fcntl(fd, F_SETOWN_EX, &owner) < 0 || ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* The first arm decides the clock for the whole profile. Under cpu_lock. */
static bool arm_perf(pid_t tid)
{
    if (clock_used == CLOCK_TIMER)
        return false;
    int fd = perf_open(tid, clock_used == CLOCK_PERF_USER);
    if (fd < 0 && clock_used == CLOCK_UNDECIDED && (fd = perf_open(tid, true)) >= 0)
        clock_used = CLOCK_PERF_USER;
    else if (fd >= 0 && clock_used == CLOCK_UNDECIDED)
        clock_used = CLOCK_PERF;
    if (fd < 0) {
        if (clock_used == CLOCK_UNDECIDED)
            clock_used = CLOCK_TIMER;
        else
            nfallback++; /* e.g. out of file descriptors: this thread gets a timer */
        return false;
    }
    keep_locked(fd, true, tid);
    return true;
}

/* Under cpu_lock. */
static void arm_timer(pid_t tid)
{
    struct sigevent sev;
    int id;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGPROF;
    sev.sigev_notify_thread_id = tid;
    sev.sigev_value.sival_int = (int)tid;                   /* the sample's thread label */
    clockid_t clk = (clockid_t)((~(unsigned)tid << 3) | 6); /* CPUCLOCK_SCHED, per thread */
    if (syscall(SYS_timer_create, clk, &sev, &id) != 0)
        return;
    struct itimerspec its = {.it_interval = {0, period_ns},
                             .it_value = {0, 1 + (long)((unsigned)rand() % (unsigned)period_ns)}};
    syscall(SYS_timer_settime, id, 0, &its, NULL);
    keep_locked(id, false, tid);
}

/* Arm tid: perf's task-clock, else a 100 Hz timer on its CPU clock (first expiry random
 * in (0, 10 ms] like Go). */
static void arm_thread(pid_t tid)
{
    pthread_mutex_lock(&cpu_lock);
    if (atomic_load(&arming) && !arm_perf(tid))
        arm_timer(tid);
    pthread_mutex_unlock(&cpu_lock);
}

static void on_thread_start(void)
{
    if (atomic_load(&arming))
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

int rp_cpu_start(int seconds, int hz)
{
    bool off = false;
    if (!atomic_compare_exchange_strong(&cpu_on, &off, true))
        return -EBUSY;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (hz < 1 || hz > RP_CPU_MAX_HZ)
        hz = RP_CPU_HZ;
    period_ns = 1000000000 / hz;
    size_t cap = (size_t)(ncpu > 0 ? ncpu : 1) * (size_t)hz * (size_t)(seconds + 1) * 5 / 4 + 256;
    void *p = mmap(NULL, cap * sizeof(cpu_rec), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) {
        atomic_store(&cpu_on, false);
        return -ENOMEM;
    }
    recs = p;
    recs_cap = cap;
    struct rlimit nofile;
    credits_cap = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < (1u << 18)
                      ? (size_t)nofile.rlim_cur
                      : (size_t)1 << 18; /* 8 MiB of address space at most, touched by fd */
    void *c = mmap(NULL, credits_cap * sizeof(perf_credit), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    credits = c == MAP_FAILED ? NULL : c;
    if (!credits)
        credits_cap = 0;
    atomic_store(&widx, 0);
    atomic_store(&lost, 0);
    clock_used = CLOCK_UNDECIDED;
    nfallback = 0;
    int rc = install_handler();
    if (rc < 0)
        return rc;
    atomic_store(&arming, true);
    __atomic_store_n(&rp_threads_start_hook, on_thread_start, __ATOMIC_RELEASE);
    arm_all();
    /* The window is the process's CPU from here: arming hundreds of threads is the
     * profiler's own cost, not the program's, and it is not sampled. */
    pthread_mutex_lock(&cpu_lock);
    read_clocks(true);
    pthread_mutex_unlock(&cpu_lock);
    clock_gettime(CLOCK_MONOTONIC, &started);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu_started);
    atomic_store(&window_open, true);
    return 0;
}

bool rp_cpu_active(void)
{
    return atomic_load(&cpu_on);
}

/* Delete every timer, then ignore SIGPROF (its default action kills the process). */
static void disarm(void)
{
    atomic_store(&window_open, false);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu_stopped);
    pthread_mutex_lock(&cpu_lock);
    atomic_store(&arming, false); /* a thread starting from now is not armed */
    read_clocks(false);
    for (size_t i = 0; i < ntimers; i++) {
        if (timers[i].perf)
            close(timers[i].id); /* closing a perf event stops it */
        else
            syscall(SYS_timer_delete, timers[i].id);
    }
    pthread_mutex_unlock(&cpu_lock); /* the list stays until built: it names the threads */
    signal(SIGPROF, SIG_IGN);
    while (atomic_load(&in_handler) > 0)
        sched_yield();
}

static int64_t ns_between(const struct timespec *a, const struct timespec *b)
{
    return (int64_t)(b->tv_sec - a->tv_sec) * 1000000000 + (b->tv_nsec - a->tv_nsec);
}

/* What the samples cover: the process's CPU over the window, and the clock used; with
 * perf events, how much of the samples is CPU owed after a thread's last sample, and
 * how much of that was on threads with no sample. */
static void cpu_comment(rp_pbuild *pb, int64_t samples, int64_t after, int64_t alone)
{
    char line[256];
    int64_t cpu = ns_between(&cpu_started, &cpu_stopped);
    snprintf(line, sizeof(line), "pgreaper cpu: sampled %.3f s of the process's %.3f s (%.0f %%)",
             (double)samples * period_ns / 1e9, (double)cpu / 1e9,
             cpu > 0 ? 100.0 * (double)samples * period_ns / (double)cpu : 0.0);
    rp_pbuild_comment(pb, line);
    if (clock_used == CLOCK_PERF || clock_used == CLOCK_PERF_USER) {
        snprintf(line, sizeof(line),
                 "pgreaper cpu: samples weighed by their thread's CPU clock; %.3f s of them "
                 "after a thread's last sample, %.3f s on threads with no sample",
                 (double)after * period_ns / 1e9, (double)alone * period_ns / 1e9);
        rp_pbuild_comment(pb, line);
    }
    snprintf(line, sizeof(line), "pgreaper cpu clock: %s%s", clock_names[clock_used],
             nfallback ? "; some threads on timer_create CPU-clock timers" : "");
    rp_pbuild_comment(pb, line);
}

/* The thread a sample is from: the POSIX timer said, or the perf event that fired. */
static pid_t sample_tid(const cpu_rec *r)
{
    if (r->tid > 0)
        return r->tid;
    for (size_t i = 0; r->fd >= 0 && i < ntimers; i++)
        if (timers[i].perf && timers[i].id == r->fd)
            return timers[i].tid;
    return 0;
}

/* Labels of the threads seen in one profile: its name, and its role, source and metric
 * as rp_task_label_thread() set them (the goroutine profile's keys). */
typedef struct thread_labels {
    pid_t tid;
    const char *role;
    char name[16], source[64], metric[64];
} thread_labels;

typedef struct label_cache {
    thread_labels *v;
    size_t n, cap;
} label_cache;

static const thread_labels *labels_of(label_cache *c, pid_t tid)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].tid == tid)
            return &c->v[i];
    rp_grow((void **)&c->v, &c->cap, c->n + 1, sizeof(thread_labels));
    thread_labels *l = memset(&c->v[c->n++], 0, sizeof(thread_labels));
    l->tid = tid;
    l->role =
        rp_task_thread_labels(tid, l->source, sizeof(l->source), l->metric, sizeof(l->metric));
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)tid);
    FILE *f = fopen(path, "re");
    if (f && fgets(l->name, sizeof(l->name), f))
        l->name[strcspn(l->name, "\n")] = '\0';
    if (f)
        fclose(f);
    return l;
}

static void label_sample(rp_pbuild *pb, size_t idx, label_cache *c, pid_t tid)
{
    if (tid <= 0)
        return;
    const thread_labels *l = labels_of(c, tid);
    rp_pbuild_label_num(pb, idx, "tid", tid, NULL);
    const char *kv[][2] = {{"thread", l->name},
                           {"role", l->role ? l->role : "thread"},
                           {"source", l->source},
                           {"metric", l->metric}};
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        if (kv[i][1][0])
            rp_pbuild_label_str(pb, idx, kv[i][0], kv[i][1]);
}

/* The periods a perf-sampled thread was owed when the window closed beyond those its
 * samples took (see perf_credit): it stopped running before its next overflow. They go
 * to the thread's last sample (its CPU most likely ran on where it last was); a thread
 * with no sample gets a frame of its own, with its labels. Returns the periods added,
 * *alone those of the frame. */
static int64_t settle_owed(rp_pbuild *pb, label_cache *c, int64_t *alone)
{
    int64_t total = 0;
    size_t n = atomic_load(&widx);
    for (size_t i = 0; i < n && i < recs_cap; i++)
        if (atomic_load(&recs[i].ready) && recs[i].fd >= 0 && (size_t)recs[i].fd < credits_cap)
            credits[recs[i].fd].last = i + 1;
    for (size_t i = 0; i < ntimers; i++) {
        const armed *t = &timers[i];
        if (!t->perf || t->done < 0 || (size_t)t->id >= credits_cap || credits[t->id].base < 0)
            continue;
        const perf_credit *k = &credits[t->id];
        uint64_t due = owed(k, t->done), got = atomic_load(&k->credited);
        int64_t more = due > got ? (int64_t)(due - got) : 0;
        total += more;
        if (more > 0 && k->last > 0) {
            recs[k->last - 1].count += more;
        } else if (more > 0) {
            int64_t v[2] = {more, more * period_ns};
            uint64_t loc = rp_pbuild_loc_named(pb, "(thread CPU with no sample)");
            label_sample(pb, rp_pbuild_sample(pb, &loc, 1, v), c, t->tid);
            *alone += more;
        }
    }
    return total;
}

static int build(rp_buf *out, int64_t duration_ns)
{
    label_cache labels = {0};
    rp_pbuild *pb = rp_pbuild_new();
    uint64_t locs[RP_STACK_MAX];
    rp_pbuild_sample_type(pb, "samples", "count");
    rp_pbuild_sample_type(pb, "cpu", "nanoseconds");
    rp_pbuild_period(pb, "cpu", "nanoseconds", period_ns);
    rp_pbuild_duration(pb, duration_ns);
    int64_t alone = 0;
    int64_t owed_after = settle_owed(pb, &labels, &alone);
    int64_t samples = alone; /* for the coverage comment: the lost ones are not samples */
    size_t n = atomic_load(&widx);
    for (size_t i = 0; i < n && i < recs_cap; i++) {
        cpu_rec *r = &recs[i];
        if (!atomic_load_explicit(&r->ready, memory_order_acquire))
            continue;
        samples += r->count;
        int64_t v[2] = {r->count, r->count * period_ns};
        size_t nl = r->depth > 0 ? rp_pbuild_stack(pb, r->pcs, (size_t)r->depth, true, locs) : 0;
        if (nl == 0)
            locs[nl++] = rp_pbuild_loc_named(pb, "(stack not unwound)");
        label_sample(pb, rp_pbuild_sample(pb, locs, nl, v), &labels, sample_tid(r));
    }
    rp_free(labels.v);
    cpu_comment(pb, samples, owed_after, alone);
    int64_t nlost = atomic_load(&lost);
    if (nlost > 0) {
        int64_t v[2] = {nlost, nlost * period_ns};
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
    pthread_mutex_lock(&cpu_lock);
    ntimers = 0;
    pthread_mutex_unlock(&cpu_lock);
    munmap(recs, recs_cap * sizeof(cpu_rec));
    recs = NULL;
    recs_cap = 0;
    if (credits)
        munmap(credits, credits_cap * sizeof(perf_credit));
    credits = NULL;
    credits_cap = 0;
    atomic_store(&cpu_on, false);
    return rc;
}
