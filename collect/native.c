/* SPDX-License-Identifier: PostgreSQL
 *
 * Metrics pgwatch computes in its own code: see native.h. The figures follow psutil on
 * Linux, which pgwatch's helpers and its own OS readings use: memory from /proc/meminfo
 * (cached includes SReclaimable; used is total - free - buffers - cached), CPU shares of
 * the time between two readings of /proc/stat (guest time is inside user time), disk I/O
 * summed over the whole devices of /proc/diskstats (those with a /sys/block entry), in
 * 512-byte sectors.
 */
#include "collect/native.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/compiler.h"

bool rp_native_from_os(rp_metric_code c)
{
    return c >= RP_CODE_CPU_LOAD && c <= RP_CODE_PSUTIL_DISK_IO;
}

/*-------------------------------------------------------------------------
 * Is the server on this host?
 *-------------------------------------------------------------------------
 */

static bool is_loopback(const struct sockaddr *a)
{
    if (a->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    if (a->sa_family != AF_INET6)
        return false;
    const struct in6_addr *v6 = &((const struct sockaddr_in6 *)a)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(v6) || (IN6_IS_ADDR_V4MAPPED(v6) && v6->s6_addr[12] == 127);
}

static bool same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
    if (!a || !b || a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return false;
}

bool rp_native_peer_is_local(const struct sockaddr *peer)
{
    if (!peer || peer->sa_family == AF_UNIX || is_loopback(peer))
        return true;
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) < 0)
        return false;
    bool local = false;
    for (struct ifaddrs *i = ifs; i && !local; i = i->ifa_next)
        local = same_addr(i->ifa_addr, peer);
    freeifaddrs(ifs);
    return local;
}

/*-------------------------------------------------------------------------
 * Reading /proc
 *-------------------------------------------------------------------------
 */

static void add(rp_native_row *row, const char *name, rp_value_kind kind, const char *fmt, double v)
{
    size_t i = row->ncols++;
    row->cols[i] = (rp_column){name, RP_COL_FIELD, kind};
    snprintf(row->text[i], sizeof(row->text[i]), fmt, v);
    row->vals[i] = row->text[i];
}

static void begin_row(rp_native_row *row, int64_t now_ns)
{
    row->ncols = 1;
    row->cols[0] = (rp_column){"epoch_ns", RP_COL_TIME, RP_VAL_INT};
    snprintf(row->text[0], sizeof(row->text[0]), "%lld", (long long)now_ns);
    row->vals[0] = row->text[0];
}

static int read_loadavg(double la[3])
{
    FILE *f = fopen("/proc/loadavg", "re");
    if (!f)
        return -errno;
    int n = fscanf(f, "%lf %lf %lf", &la[0], &la[1], &la[2]);
    fclose(f);
    return n == 3 ? 0 : -EIO;
}

static int cpu_load(rp_native_row *row)
{
    double la[3];
    int rc = read_loadavg(la);
    if (rc < 0)
        return rc;
    add(row, "load_1min", RP_VAL_FLOAT, "%.2f", la[0]);
    add(row, "load_5min", RP_VAL_FLOAT, "%.2f", la[1]);
    add(row, "load_15min", RP_VAL_FLOAT, "%.2f", la[2]);
    return 0;
}

/* user nice system idle iowait irq softirq steal guest guest_nice */
static int read_cpu(uint64_t v[10])
{
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return -errno;
    memset(v, 0, 10 * sizeof(uint64_t));
    int n = fscanf(f, "cpu %lu %lu %lu %lu %lu %lu %lu %lu %lu %lu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    return n >= 8 ? 0 : -EIO;
}

static int psutil_cpu(rp_native_state *st, rp_native_row *row)
{
    uint64_t now[10], d[10];
    double la[3];
    int rc = read_cpu(now);
    if (rc < 0 || (rc = read_loadavg(la)) < 0)
        return rc;
    for (int i = 0; i < 10; i++)
        d[i] = st->have_cpu && now[i] >= st->cpu[i] ? now[i] - st->cpu[i] : now[i];
    memcpy(st->cpu, now, sizeof(now));
    st->have_cpu = true;
    double total = (double)(d[0] + d[1] + d[2] + d[3] + d[4] + d[5] + d[6] + d[7]);
    double pct = total > 0 ? 100.0 / total : 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    ncpu = ncpu > 0 ? ncpu : 1;
    add(row, "cpu_utilization", RP_VAL_FLOAT, "%.2f", (total - (double)(d[3] + d[4])) * pct);
    add(row, "load_1m_norm", RP_VAL_FLOAT, "%.2f", la[0] / (double)ncpu);
    add(row, "load_1m", RP_VAL_FLOAT, "%.2f", la[0]);
    add(row, "load_5m_norm", RP_VAL_FLOAT, "%.2f", la[1] / (double)ncpu);
    add(row, "load_5m", RP_VAL_FLOAT, "%.2f", la[1]);
    add(row, "user", RP_VAL_FLOAT, "%.2f", (double)d[0] * pct);
    add(row, "system", RP_VAL_FLOAT, "%.2f", (double)d[2] * pct);
    add(row, "idle", RP_VAL_FLOAT, "%.2f", (double)d[3] * pct);
    add(row, "iowait", RP_VAL_FLOAT, "%.2f", (double)d[4] * pct);
    add(row, "irqs", RP_VAL_FLOAT, "%.2f", (double)(d[5] + d[6]) * pct);
    add(row, "other", RP_VAL_FLOAT, "%.2f", (double)(d[7] + d[8] + d[9]) * pct);
    return 0;
}

typedef struct meminfo {
    double total, free, available, buffers, cached, reclaimable, swap_total, swap_free;
} meminfo;

static int read_meminfo(meminfo *m)
{
    static const struct {
        const char *key;
        size_t off;
    } keys[] = {{"MemTotal:", offsetof(meminfo, total)},
                {"MemFree:", offsetof(meminfo, free)},
                {"MemAvailable:", offsetof(meminfo, available)},
                {"Buffers:", offsetof(meminfo, buffers)},
                {"Cached:", offsetof(meminfo, cached)},
                {"SReclaimable:", offsetof(meminfo, reclaimable)},
                {"SwapTotal:", offsetof(meminfo, swap_total)},
                {"SwapFree:", offsetof(meminfo, swap_free)}};
    memset(m, 0, sizeof(*m));
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f)
        return -errno;
    char line[128], key[64];
    double kb;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "%63s %lf", key, &kb) != 2)
            continue;
        for (size_t i = 0; i < RP_ARRAY_LEN(keys); i++)
            if (strcmp(key, keys[i].key) == 0)
                *(double *)((char *)m + keys[i].off) = kb * 1024;
    }
    fclose(f);
    return m->total > 0 ? 0 : -EIO;
}

static int psutil_mem(rp_native_row *row)
{
    meminfo m;
    int rc = read_meminfo(&m);
    if (rc < 0)
        return rc;
    double cached = m.cached + m.reclaimable;
    double used = m.total - m.free - m.buffers - cached;
    used = used < 0 ? m.total - m.free : used;
    double swap_used = m.swap_total - m.swap_free;
    add(row, "total", RP_VAL_FLOAT, "%.0f", m.total);
    add(row, "used", RP_VAL_FLOAT, "%.0f", used);
    add(row, "free", RP_VAL_FLOAT, "%.0f", m.free);
    add(row, "buff_cache", RP_VAL_FLOAT, "%.0f", m.buffers + cached);
    add(row, "available", RP_VAL_FLOAT, "%.0f", m.available);
    add(row, "percent", RP_VAL_FLOAT, "%.1f", (m.total - m.available) / m.total * 100);
    add(row, "swap_total", RP_VAL_FLOAT, "%.0f", m.swap_total);
    add(row, "swap_used", RP_VAL_FLOAT, "%.0f", swap_used);
    add(row, "swap_free", RP_VAL_FLOAT, "%.0f", m.swap_free);
    add(row, "swap_percent", RP_VAL_FLOAT, "%.1f",
        m.swap_total > 0 ? swap_used / m.swap_total * 100 : 0);
    return 0;
}

static bool whole_device(const char *name)
{
    char path[96];
    snprintf(path, sizeof(path), "/sys/block/%s", name);
    for (char *p = path + 11; *p; p++) /* as the kernel names them: '/' becomes '!' */
        *p = *p == '/' ? '!' : *p;
    return access(path, F_OK) == 0;
}

static int psutil_disk_io(rp_native_row *row)
{
    FILE *f = fopen("/proc/diskstats", "re");
    if (!f)
        return -errno;
    char line[256], name[64];
    double sum[4] = {0, 0, 0, 0}; /* reads, writes, sectors read, sectors written */
    unsigned long long rd, rs, wr, ws, skip;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "%*u %*u %63s %llu %llu %llu %llu %llu %llu %llu", name, &rd, &skip, &rs,
                   &skip, &wr, &skip, &ws) == 8 &&
            whole_device(name)) {
            sum[0] += (double)rd, sum[1] += (double)wr;
            sum[2] += (double)rs, sum[3] += (double)ws;
        }
    }
    fclose(f);
    add(row, "read_count", RP_VAL_FLOAT, "%.0f", sum[0]);
    add(row, "write_count", RP_VAL_FLOAT, "%.0f", sum[1]);
    add(row, "read_bytes", RP_VAL_FLOAT, "%.0f", sum[2] * 512);
    add(row, "write_bytes", RP_VAL_FLOAT, "%.0f", sum[3] * 512);
    return 0;
}

int rp_native_read(rp_metric_code k, rp_native_state *st, int64_t now_ns, rp_native_row *row)
{
    begin_row(row, now_ns);
    switch (k) {
    case RP_CODE_CPU_LOAD:
        return cpu_load(row);
    case RP_CODE_PSUTIL_CPU:
        return psutil_cpu(st, row);
    case RP_CODE_PSUTIL_MEM:
        return psutil_mem(row);
    case RP_CODE_PSUTIL_DISK_IO:
        return psutil_disk_io(row);
    default:
        return -ENOTSUP;
    }
}

void rp_native_batch(const rp_native_row *row, rp_batch *b)
{
    rp_batch_init_values(b, row->cols, row->ncols, 1, row->vals);
}
