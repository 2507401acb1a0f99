/* SPDX-License-Identifier: PostgreSQL
 *
 * Thread dumps, roles and the threadcreate profile: see threads.h.
 */
#include "pprof/threads.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/mem.h"
#include "common/tasks.h"
#include "pprof/heap.h"
#include "pprof/pbuild.h"

#define DUMP_SIGNAL      (SIGRTMIN + 3)
#define DUMP_DEADLINE_MS 1000
#define QUIET_WAIT_MS    100 /* for the loop thread to be back in its poll (wait_loop_quiet) */
#define MAX_CREATORS     256

typedef struct dump_slot {
    _Atomic pid_t tid;
    _Atomic uint32_t gen;
    _Atomic int depth; /* -1 until the handler answered */
    uintptr_t pcs[RP_STACK_MAX];
} dump_slot;

typedef struct creator {
    int depth;
    uint64_t count;
    uintptr_t pcs[RP_STACK_MAX];
} creator;

void (*rp_threads_start_hook)(void);

static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;
static dump_slot *dump_slots; /* mmap'd, never unmapped: a late handler may still write */
static size_t dump_cap;
static _Atomic uint32_t dump_gen;
static sem_t dump_sem;
static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;
static creator creators[MAX_CREATORS];
static size_t ncreators;
static _Atomic uint64_t threads_created;
static _Atomic pid_t loop_tid; /* the thread that called rp_threads_init */

static void on_dump_signal(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    uint64_t v = (uint64_t)(uintptr_t)si->si_value.sival_ptr;
    size_t idx = (size_t)(v & 0xffffffffu);
    uint32_t gen = (uint32_t)(v >> 32);
    if (si->si_code == SI_QUEUE && dump_slots && idx < dump_cap) {
        dump_slot *s = &dump_slots[idx];
        if (atomic_load(&s->gen) == gen && atomic_load(&s->tid) == gettid()) {
            atomic_store(&s->depth, rp_stack_from_signal(uc, s->pcs, RP_STACK_MAX));
            sem_post(&dump_sem);
        }
    }
    errno = saved;
}

void rp_threads_init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_dump_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGPROF);
    sem_init(&dump_sem, 0, 0);
    sigaction(DUMP_SIGNAL, &sa, NULL);
    rp_stack_init();
    rp_task_label_thread("loop", NULL, NULL, NULL);
    atomic_store(&loop_tid, gettid());
}

static void fill_role(rp_thread_info *t)
{
    const char *role =
        rp_task_thread_labels(t->tid, t->source, sizeof(t->source), t->metric, sizeof(t->metric));
    t->role = role ? role : "thread";
}

/* ---- /proc ------------------------------------------------------------------------- */

static size_t list_tids(pid_t **out)
{
    size_t n = 0, cap = 0;
    *out = NULL;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        rp_grow((void **)out, &cap, n + 1, sizeof(pid_t));
        (*out)[n++] = (pid_t)atoi(e->d_name);
    }
    closedir(d);
    return n;
}

static ssize_t read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n;
    do
        n = read(fd, buf, len - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return n;
}

static void read_meta(rp_thread_info *t)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)t->tid);
    if (read_small(path, buf, sizeof(buf)) > 0)
        snprintf(t->name, sizeof(t->name), "%.*s", (int)strcspn(buf, "\n"), buf);
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)t->tid);
    t->state = '?';
    if (read_small(path, buf, sizeof(buf)) > 0) {
        char *close_paren = strrchr(buf, ')'); /* the name may hold spaces and parens */
        if (close_paren && close_paren[1] == ' ')
            t->state = close_paren[2];
    }
    snprintf(path, sizeof(path), "/proc/self/task/%d/wchan", (int)t->tid);
    if (read_small(path, buf, sizeof(buf)) > 0 && strcmp(buf, "0") != 0)
        snprintf(t->wchan, sizeof(t->wchan), "%.47s", buf);
    fill_role(t);
}

/* ---- the dump ------------------------------------------------------------------------ */

static void ensure_slots(size_t n)
{
    if (n <= dump_cap)
        return;
    size_t cap = dump_cap ? dump_cap : 64;
    while (cap < n)
        cap *= 2;
    void *p = mmap(NULL, cap * sizeof(dump_slot), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return;
    /* the old region stays mapped: a handler that is late may still write to it */
    dump_slots = p;
    dump_cap = cap;
}

static int signal_thread(size_t idx, uint32_t gen)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    si.si_signo = DUMP_SIGNAL;
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    si.si_value.sival_ptr = (void *)(uintptr_t)(((uint64_t)gen << 32) | idx);
    return (int)syscall(SYS_rt_tgsigqueueinfo, getpid(), dump_slots[idx].tid, DUMP_SIGNAL, &si);
}

/* Wait for `want` answers until the deadline; EINTR and early wake-ups are retried. */
static void wait_answers(size_t want)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_nsec += (long)(DUMP_DEADLINE_MS % 1000) * 1000000;
    dl.tv_sec += DUMP_DEADLINE_MS / 1000 + dl.tv_nsec / 1000000000;
    dl.tv_nsec %= 1000000000;
    while (want > 0) {
        if (sem_timedwait(&dump_sem, &dl) == 0)
            want--;
        else if (errno != EINTR)
            break;
    }
}

static size_t send_signals(const pid_t *tids, size_t n, pid_t self, uint32_t gen)
{
    size_t sent = 0;
    for (size_t i = 0; i < n; i++) {
        atomic_store(&dump_slots[i].depth, -1);
        atomic_store(&dump_slots[i].tid, tids[i]);
        atomic_store(&dump_slots[i].gen, gen);
    }
    for (size_t i = 0; i < n; i++)
        if (tids[i] != self && signal_thread(i, gen) == 0)
            sent++;
    return sent;
}

/* Blocked in the event loop's poll: epoll_wait or epoll_pwait, per /proc's syscall file. */
static bool in_poll(pid_t tid)
{
    char path[64], buf[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
    if (read_small(path, buf, sizeof(buf)) <= 0 || buf[0] < '0' || buf[0] > '9')
        return false; /* "running", or not readable */
    long nr = strtol(buf, NULL, 10);
#ifdef SYS_epoll_wait
    if (nr == SYS_epoll_wait)
        return true;
#endif
    return nr == SYS_epoll_pwait;
}

/* The loop thread serves the very request that asked for this dump: give it up to
 * QUIET_WAIT_MS to go back to its poll, so that its stack shows where it was before the
 * request came (waiting for work, as gdb would show it), not the request itself. A loop
 * that stays busy is dumped busy: that is where it is. */
static void wait_loop_quiet(pid_t self)
{
    pid_t tid = atomic_load(&loop_tid);
    if (tid == 0 || tid == self)
        return;
    for (int i = 0; i < QUIET_WAIT_MS && !in_poll(tid); i++)
        usleep(1000);
}

size_t rp_threads_dump(rp_thread_info **out)
{
    pid_t *tids, self = gettid();
    wait_loop_quiet(self);
    size_t n = list_tids(&tids);
    rp_thread_info *v = rp_calloc(n + 1, sizeof(*v));
    for (size_t i = 0; i < n; i++) { /* states before the signal wakes the sleepers */
        v[i].tid = tids[i];
        read_meta(&v[i]);
    }
    pthread_mutex_lock(&dump_lock);
    ensure_slots(n);
    uint32_t gen = atomic_fetch_add(&dump_gen, 1) + 1;
    if (n <= dump_cap) {
        while (sem_trywait(&dump_sem) == 0) /* answers that came after an earlier deadline */
            ;
        wait_answers(send_signals(tids, n, self, gen));
    }
    for (size_t i = 0; i < n; i++) {
        if (tids[i] == self) {
            v[i].depth = rp_stack_here(v[i].pcs, RP_STACK_MAX, 0);
            v[i].available = true;
        } else if (n <= dump_cap && atomic_load(&dump_slots[i].depth) >= 0) {
            v[i].depth = atomic_load(&dump_slots[i].depth);
            memcpy(v[i].pcs, dump_slots[i].pcs, (size_t)v[i].depth * sizeof(uintptr_t));
            v[i].available = v[i].leaf_exact = true;
        }
    }
    atomic_fetch_add(&dump_gen, 1); /* late answers no longer match */
    pthread_mutex_unlock(&dump_lock);
    free(tids);
    *out = v;
    return n;
}

size_t rp_threads_live(void)
{
    pid_t *tids;
    size_t n = list_tids(&tids);
    free(tids);
    return n;
}

uint64_t rp_threads_created(void)
{
    return atomic_load(&threads_created);
}

/* ---- pthread_create wrapper ------------------------------------------------------------ */

typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

typedef struct trampoline {
    void *(*start)(void *);
    void *arg;
} trampoline;

static void cleanup_thread(void *arg)
{
    (void)arg;
    rp_task_forget_thread();
}

static void *thread_main(void *arg)
{
    trampoline t = *(trampoline *)arg;
    free(arg);
    void (*hook)(void) = __atomic_load_n(&rp_threads_start_hook, __ATOMIC_ACQUIRE);
    if (hook)
        hook();
    void *ret;
    pthread_cleanup_push(cleanup_thread, NULL);
    ret = t.start(t.arg);
    pthread_cleanup_pop(1);
    return ret;
}

static void record_creator(void)
{
    uintptr_t pcs[RP_STACK_MAX];
    int depth = rp_stack_here(pcs, RP_STACK_MAX, 1); /* from pthread_create's caller */
    pthread_mutex_lock(&create_lock);
    size_t i = 0;
    while (i < ncreators && (creators[i].depth != depth ||
                             memcmp(creators[i].pcs, pcs, (size_t)depth * sizeof(uintptr_t))))
        i++;
    if (i == ncreators && ncreators < MAX_CREATORS) {
        creators[i].depth = depth;
        memcpy(creators[i].pcs, pcs, (size_t)depth * sizeof(uintptr_t));
        ncreators++;
    }
    if (i < ncreators)
        creators[i].count++;
    pthread_mutex_unlock(&create_lock);
}

__attribute__((visibility("default"))) int pthread_create(pthread_t *th, const pthread_attr_t *attr,
                                                          void *(*start)(void *), void *arg)
{
    static _Atomic(create_fn) real;
    create_fn fn = atomic_load(&real);
    if (!fn) {
        fn = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
        atomic_store(&real, fn);
    }
    trampoline *t = malloc(sizeof(*t));
    if (!t)
        return EAGAIN;
    *t = (trampoline){start, arg};
    int rc = fn(th, attr, thread_main, t);
    if (rc != 0) {
        free(t);
        return rc;
    }
    atomic_fetch_add(&threads_created, 1);
    record_creator();
    return 0;
}

int rp_threads_create_profile(rp_buf *out, bool text)
{
    pthread_mutex_lock(&create_lock);
    size_t n = ncreators;
    creator *copy = rp_calloc(n + 1, sizeof(creator));
    memcpy(copy, creators, n * sizeof(creator));
    pthread_mutex_unlock(&create_lock);
    int rc = 0;
    if (text) {
        rp_buf_printf(out, "threadcreate profile: total %llu\n",
                      (unsigned long long)rp_threads_created());
        for (size_t i = 0; i < n; i++) {
            rp_buf_printf(out, "%llu @", (unsigned long long)copy[i].count);
            for (int k = 0; k < copy[i].depth; k++)
                rp_buf_printf(out, " %#lx", (unsigned long)copy[i].pcs[k]);
            rp_buf_putc(out, '\n');
            for (int k = 0; k < copy[i].depth; k++) {
                rp_buf_printf(out, "#\t%#lx\t", (unsigned long)(copy[i].pcs[k] - 1));
                rp_pbuild_symbolize(copy[i].pcs[k] - 1, out);
                rp_buf_putc(out, '\n');
            }
            rp_buf_putc(out, '\n');
        }
    } else {
        rp_pbuild *pb = rp_pbuild_new();
        uint64_t locs[RP_STACK_MAX];
        rp_pbuild_sample_type(pb, "threadcreate", "count");
        rp_pbuild_period(pb, "threadcreate", "count", 1);
        for (size_t i = 0; i < n; i++) {
            int64_t v = (int64_t)copy[i].count;
            size_t nl = rp_pbuild_stack(pb, copy[i].pcs, (size_t)copy[i].depth, false, locs);
            rp_pbuild_sample(pb, locs, nl, &v);
        }
        rc = rp_pbuild_finish(pb, out);
        rp_pbuild_free(pb);
    }
    free(copy);
    return rc;
}
