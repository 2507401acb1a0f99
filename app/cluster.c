/* SPDX-License-Identifier: PostgreSQL
 *
 * Membership and leases in a shared database: see cluster.h.
 *
 *   OFFLINE --client up--> SETUP (create schema) --> MEMBERS (heartbeat, live members)
 *   MEMBERS --> LEASES (release, take, renew) --> IDLE --round timer--> MEMBERS ...
 *   any query failure or deadline --> OFFLINE (the client backs off and reconnects)
 *   close: IDLE --> RELEASING --done or deadline--> CLOSED; others --> CLOSED
 *
 * The uv callbacks and the client's callback only translate their event and call
 * step(); only set_state() writes the state.
 */
#include "app/cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/buf.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/mem.h"
#include "pgio/client.h"

typedef enum cl_state {
    CL_OFFLINE,   /* the client connects or backs off */
    CL_SETUP,     /* creating the schema */
    CL_MEMBERS,   /* heartbeat and members in flight */
    CL_LEASES,    /* lease statement in flight */
    CL_IDLE,      /* waiting for the next round */
    CL_RELEASING, /* closing: giving the leases back */
    CL_CLOSED,
} cl_state;

typedef enum cl_event {
    EV_UP,
    EV_DOWN,
    EV_IO,
    EV_TIMER, /* next round, or the deadline of the query in flight */
    EV_RESULT /* the query in flight finished: res (NULL: it failed, error in client) */
} cl_event;

/* A source taken from another holder: where it resumes. */
typedef struct takeover {
    char *name;
    rp_sched_resume at;
} takeover;

struct rp_cluster {
    cl_state state;
    uv_loop_t *loop;
    char *uri, *instance;
    int64_t ttl_ms;
    int round_ms, deadline_ms;
    rp_pgclient client;
    uv_timer_t timer;       /* next round or the query's deadline */
    uv_timer_t fence_timer; /* fires at the leases' deadline */
    rp_cluster_changed_cb cb;
    void *arg;
    char **cands; /* candidate sources, sorted (owned) */
    size_t ncands;
    char **held; /* leases held, sorted (owned) */
    size_t nheld;
    uint64_t fence;  /* loop ms: the held leases' deadline (0: none held) */
    takeover *taken; /* sources taken from another holder in the last round, sorted (owned) */
    size_t ntaken;
    uint64_t member_expiry; /* loop ms: when the first other member expires (0: none) */
    rp_cluster_next_fetch_cb next_fetch;
    uint64_t sent_at;
    size_t nmembers;
    uint64_t rounds, failed_rounds;
    bool setup_done, logged_down;
    bool in_flight; /* a query was sent and its results are not all read */
    bool close_due; /* closing waits for the round in flight, then releases */
    PGresult *res;  /* of the query in flight, while reading */
    int pending_closes;
    void (*closed_cb)(void *arg);
    void *closed_arg;
};

static const char setup_sql[] =
    "create schema if not exists pgreaper; "
    "create table if not exists pgreaper.member (name text primary key, "
    "expires_at timestamptz not null); "
    "create table if not exists pgreaper.lease (source text primary key, holder text not null, "
    "expires_at timestamptz not null); "
    "alter table pgreaper.lease add column if not exists grid_at timestamptz, "
    "add column if not exists previous_until timestamptz";

static const char members_sql[] =
    "with me as (insert into pgreaper.member (name, expires_at) "
    "values ($1, now() + $2::int * interval '1 millisecond') on conflict (name) do update "
    "set expires_at = excluded.expires_at returning name) "
    "select name, (extract(epoch from expires_at - now()) * 1000)::int8 from pgreaper.member "
    "where expires_at > now() and name <> $1 union all select name, null from me";

/* Release the leases no longer owned (they expire now) and take or renew the owned ones in
 * one statement that locks rows in source order, so that two instances never deadlock.
 * $4 holds, per owned source, the milliseconds to its next fetch here (NULL: not known),
 * kept as grid_at; a lease changing hands keeps the previous holder's grid_at and its
 * expiry as previous_until. Returns per lease held: the milliseconds from now to grid_at
 * and to previous_until; then one row with a NULL source: the milliseconds until the
 * first lease owned but held by another expires. */
static const char leases_sql[] =
    "with want as (select s as source, true as take, g from unnest($2::text[], $4::int8[]) "
    "u (s, g) union all select source, false, null from pgreaper.lease where holder = $1 "
    "and not (source = any($2::text[]))), "
    "got as (insert into pgreaper.lease as l (source, holder, expires_at, grid_at) "
    "select source, $1, case when take then now() + $3::int * interval '1 millisecond' "
    "else now() end, now() + g * interval '1 millisecond' from want order by source "
    "on conflict (source) do update set holder = excluded.holder, "
    "expires_at = excluded.expires_at, grid_at = case when l.holder = excluded.holder "
    "then coalesce(excluded.grid_at, l.grid_at) else l.grid_at end, "
    "previous_until = case when l.holder = excluded.holder then l.previous_until "
    "else l.expires_at end where l.holder = excluded.holder or l.expires_at < now() "
    "returning l.source, l.expires_at > now() as held, l.grid_at, l.previous_until) "
    "select source, (extract(epoch from grid_at - now()) * 1000)::int8, "
    "(extract(epoch from previous_until - now()) * 1000)::int8 from got where held "
    "union all select null, null, (select (extract(epoch from min(l.expires_at) - now()) "
    "* 1000)::int8 from pgreaper.lease l where l.source = any($2::text[]) and not exists "
    "(select from got g where g.source = l.source and g.held))";

/* At a clean stop the sources are stopped first; the leases expire now (keeping their
 * grid for whoever takes them) and the member row goes. */
static const char release_sql[] =
    "with l as (update pgreaper.lease set expires_at = now() where holder = $1) "
    "delete from pgreaper.member where name = $1";

static void step(rp_cluster *c, cl_event ev);

static void set_state(rp_cluster *c, cl_state next)
{
    c->state = next;
    uv_timer_stop(&c->timer);
}

/*-------------------------------------------------------------------------
 * Names: sorted arrays, rendezvous scores
 *-------------------------------------------------------------------------
 */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rp_free(v[i]);
    rp_free(v);
}

static bool has_name(char *const *v, size_t n, const char *name)
{
    return n && bsearch(&name, v, n, sizeof(char *), cmp_str) != NULL;
}

/* The rendezvous score of (member, source): the same on every instance. */
static uint64_t score(const char *member, const char *source)
{
    uint64_t h = rp_hash_str(rp_hash_u64(rp_hash_str(RP_HASH_INIT, member), 0x1f), source);
    h ^= h >> 31; /* splitmix64's finalizer: FNV's low bits are weak */
    h *= 0x7fb5d329728ea185ULL;
    h ^= h >> 27;
    h *= 0x81dadef4bc2dd44dULL;
    return h ^ (h >> 33);
}

/* Whether this instance wins source among the members of res (which include it). */
static bool owns(const rp_cluster *c, const PGresult *members, const char *source)
{
    uint64_t mine = score(c->instance, source);
    for (int i = 0; i < PQntuples(members); i++) {
        const char *m = PQgetvalue(members, i, 0);
        uint64_t s = score(m, source);
        if (s > mine || (s == mine && strcmp(m, c->instance) > 0))
            return false;
    }
    return true;
}

/* A text[] literal of names: {"a","b\"c"}. */
static void array_literal(char *const *v, size_t n, rp_buf *out)
{
    rp_buf_puts(out, "{");
    for (size_t i = 0; i < n; i++) {
        rp_buf_puts(out, i ? ",\"" : "\"");
        for (const char *p = v[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                rp_buf_puts(out, "\\");
            rp_buf_append(out, p, 1);
        }
        rp_buf_puts(out, "\"");
    }
    rp_buf_puts(out, "}");
}

/*-------------------------------------------------------------------------
 * Queries
 *-------------------------------------------------------------------------
 */

static void on_timer(uv_timer_t *t)
{
    step(t->data, EV_TIMER);
}

static void arm(rp_cluster *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static int send_query(rp_cluster *c, const char *sql, int n, const char *const *params)
{
    PGconn *conn = c->client.conn;
    int ok =
        n ? PQsendQueryParams(conn, sql, n, NULL, params, NULL, NULL, 0) : PQsendQuery(conn, sql);
    int f = ok ? PQflush(conn) : -1;
    if (f < 0 || rp_pgclient_watch(&c->client, f ? UV_READABLE | UV_WRITABLE : UV_READABLE) < 0)
        return -EIO;
    c->sent_at = uv_now(c->loop);
    c->in_flight = true;
    arm(c, (uint64_t)c->deadline_ms);
    return 0;
}

/* Read what came; EV_RESULT once the query is done. */
static void pump(rp_cluster *c)
{
    PGconn *conn = c->client.conn;
    if (!PQconsumeInput(conn) || PQflush(conn) < 0) {
        rp_pgclient_fail(&c->client, NULL);
        return;
    }
    while (!PQisBusy(conn)) {
        PGresult *r = PQgetResult(conn);
        if (!r) {
            c->in_flight = false;
            step(c, EV_RESULT);
            return;
        }
        if (c->res) /* the setup's several statements: keep the last */
            PQclear(c->res);
        c->res = r;
    }
}

static bool result_ok(rp_cluster *c)
{
    ExecStatusType st = c->res ? PQresultStatus(c->res) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return true;
    rp_log_at(RP_LOG_WARN, NULL, NULL, c->res ? PQresultErrorMessage(c->res) : NULL,
              "cluster database: query failed");
    c->failed_rounds++;
    return false;
}

static void take_result_done(rp_cluster *c)
{
    PQclear(c->res);
    c->res = NULL;
}

/*-------------------------------------------------------------------------
 * Rounds
 *-------------------------------------------------------------------------
 */

static void notify(rp_cluster *c)
{
    if (c->cb)
        c->cb(c->arg);
}

static void on_fence(uv_timer_t *t)
{
    rp_cluster *c = t->data;
    if (c->nheld == 0 || uv_now(c->loop) < c->fence)
        return;
    rp_log_warn("cluster: leases of %zu sources expired without renewal: not collecting them",
                c->nheld);
    free_names(c->held, c->nheld);
    c->held = NULL;
    c->nheld = 0;
    notify(c);
}

static void start_round(rp_cluster *c)
{
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%lld", (long long)c->ttl_ms);
    const char *params[2] = {c->instance, ttl};
    set_state(c, CL_MEMBERS);
    if (send_query(c, members_sql, 2, params) < 0)
        rp_pgclient_fail(&c->client, NULL);
}

/* A bigint column, or def when NULL. */
static int64_t int_at(const PGresult *r, int row, int col, int64_t def)
{
    return PQgetisnull(r, row, col) ? def : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* Loop time in ms plus a signed offset, never below 0. */
static uint64_t loop_plus(const rp_cluster *c, int64_t ms)
{
    int64_t t = (int64_t)uv_now(c->loop) + ms;
    return t > 0 ? (uint64_t)t : 0;
}

/* When the first other member expires: a round right after it takes its share then. */
static void note_member_expiry(rp_cluster *c)
{
    int64_t first = INT64_MAX;
    for (int i = 0; i < PQntuples(c->res); i++) {
        int64_t ms = int_at(c->res, i, 1, INT64_MAX); /* NULL: this instance */
        first = ms < first ? ms : first;
    }
    c->member_expiry = first == INT64_MAX ? 0 : loop_plus(c, first);
}

/* The int8[] literal of the milliseconds to each owned source's next fetch here. */
static void grid_literal(rp_cluster *c, char *const *owned, size_t n, rp_buf *out)
{
    int64_t *next = rp_calloc(n + 1, sizeof(int64_t));
    for (size_t i = 0; i < n; i++)
        next[i] = -1;
    if (c->next_fetch && n)
        c->next_fetch(c->arg, owned, n, next);
    int64_t now = (int64_t)uv_now(c->loop);
    rp_buf_puts(out, "{");
    for (size_t i = 0; i < n; i++) {
        rp_buf_puts(out, i ? "," : "");
        if (next[i] < 0)
            rp_buf_puts(out, "NULL");
        else
            rp_buf_printf(out, "%lld", (long long)(next[i] - now));
    }
    rp_buf_puts(out, "}");
    rp_free(next);
}

/* Stop what is no longer ours before its lease is released, then take and renew. */
static void members_done(rp_cluster *c)
{
    c->nmembers = (size_t)PQntuples(c->res);
    note_member_expiry(c);
    char **owned = rp_calloc(c->ncands + 1, sizeof(char *));
    size_t nowned = 0;
    for (size_t i = 0; i < c->ncands; i++)
        if (owns(c, c->res, c->cands[i]))
            owned[nowned++] = c->cands[i]; /* borrowed */
    size_t k = 0;
    bool dropped = false;
    for (size_t i = 0; i < c->nheld; i++) {
        if (has_name(owned, nowned, c->held[i]))
            c->held[k++] = c->held[i];
        else {
            rp_free(c->held[i]);
            dropped = true;
        }
    }
    c->nheld = k;
    take_result_done(c);
    if (dropped)
        notify(c);
    rp_buf arr = RP_BUF_INIT, grid = RP_BUF_INIT;
    array_literal(owned, nowned, &arr);
    grid_literal(c, owned, nowned, &grid);
    rp_free(owned);
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%lld", (long long)c->ttl_ms);
    const char *params[4] = {c->instance, arr.data, ttl, grid.data};
    set_state(c, CL_LEASES);
    int rc = send_query(c, leases_sql, 4, params);
    rp_buf_fini(&arr);
    rp_buf_fini(&grid);
    if (rc < 0)
        rp_pgclient_fail(&c->client, NULL);
}

static bool same_names(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

static int cmp_taken(const void *a, const void *b)
{
    return strcmp(((const takeover *)a)->name, ((const takeover *)b)->name);
}

static void free_taken(rp_cluster *c)
{
    for (size_t i = 0; i < c->ntaken; i++)
        rp_free(c->taken[i].name);
    rp_free(c->taken);
    c->taken = NULL;
    c->ntaken = 0;
}

/* Of the leases in res (row i, held), note where those just taken from another holder
 * resume: after the previous holder's lease ran out, on its grid. */
static void note_taken(rp_cluster *c, int row)
{
    const PGresult *r = c->res;
    const char *name = PQgetvalue(r, row, 0);
    if (PQgetisnull(r, row, 2) || has_name(c->held, c->nheld, name))
        return;
    takeover *t = &c->taken[c->ntaken++];
    t->name = rp_strdup(name);
    t->at.after = (int64_t)loop_plus(c, int_at(r, row, 2, 0));
    t->at.has_grid = !PQgetisnull(r, row, 1);
    t->at.grid = (int64_t)uv_now(c->loop) + int_at(r, row, 1, 0);
}

/* The next round: after round_ms, or right after another member or a lease this
 * instance waits for expires (not sooner than 10 ms). */
static uint64_t next_round_in(const rp_cluster *c, int64_t lease_wait_ms)
{
    int64_t in = c->round_ms, now = (int64_t)uv_now(c->loop);
    if (c->member_expiry && (int64_t)c->member_expiry + 10 - now < in)
        in = (int64_t)c->member_expiry + 10 - now;
    if (lease_wait_ms >= 0 && lease_wait_ms + 10 < in)
        in = lease_wait_ms + 10;
    return (uint64_t)(in < 10 ? 10 : in);
}

static void leases_done(rp_cluster *c)
{
    int rows = PQntuples(c->res);
    int64_t lease_wait = -1;
    char **held = rp_calloc((size_t)rows + 1, sizeof(char *));
    size_t n = 0;
    free_taken(c);
    c->taken = rp_calloc((size_t)rows + 1, sizeof(takeover));
    for (int i = 0; i < rows; i++) {
        if (PQgetisnull(c->res, i, 0)) { /* the last row: the first lease to wait for */
            int64_t ms = int_at(c->res, i, 2, -1);
            lease_wait = PQgetisnull(c->res, i, 2) ? -1 : ms < 0 ? 0 : ms;
            continue;
        }
        held[n++] = rp_strdup(PQgetvalue(c->res, i, 0));
        note_taken(c, i);
    }
    qsort(held, n, sizeof(char *), cmp_str);
    qsort(c->taken, c->ntaken, sizeof(takeover), cmp_taken);
    take_result_done(c);
    bool changed = !same_names(held, n, c->held, c->nheld);
    free_names(c->held, c->nheld);
    c->held = held;
    c->nheld = n;
    c->fence = n ? c->sent_at + (uint64_t)c->ttl_ms : 0;
    uint64_t now = uv_now(c->loop);
    if (n)
        uv_timer_start(&c->fence_timer, on_fence, c->fence > now ? c->fence - now : 0, 0);
    c->rounds++;
    set_state(c, CL_IDLE);
    arm(c, next_round_in(c, lease_wait));
    if (changed)
        notify(c);
}

/*-------------------------------------------------------------------------
 * Steps
 *-------------------------------------------------------------------------
 */

static void went_down(rp_cluster *c)
{
    if (c->res)
        take_result_done(c);
    c->in_flight = false;
    if (c->close_due) { /* nothing to release over a lost connection */
        set_state(c, CL_CLOSED);
        return;
    }
    if (c->state == CL_RELEASING) {
        set_state(c, CL_CLOSED);
        return;
    }
    set_state(c, CL_OFFLINE);
    if (!c->logged_down)
        rp_log_at(RP_LOG_ERROR, NULL, NULL, c->client.error,
                  "cluster database unreachable: leases held until they expire");
    c->logged_down = true;
}

static void step_result(rp_cluster *c)
{
    bool ok = result_ok(c);
    if (!ok) {
        take_result_done(c);
        set_state(c, c->setup_done ? CL_IDLE : CL_SETUP);
        arm(c, (uint64_t)c->round_ms); /* try again next round (a setup race, a lock) */
        return;
    }
    switch (c->state) {
    case CL_SETUP:
        take_result_done(c);
        c->setup_done = true;
        start_round(c);
        break;
    case CL_MEMBERS:
        members_done(c);
        break;
    case CL_LEASES:
        leases_done(c);
        break;
    default:
        take_result_done(c);
        break;
    }
}

static void connected(rp_cluster *c)
{
    if (c->logged_down)
        rp_log_info("cluster database reachable again");
    c->logged_down = false;
    rp_pgclient_settled(&c->client);
    if (c->setup_done) {
        start_round(c);
        return;
    }
    set_state(c, CL_SETUP);
    if (send_query(c, setup_sql, 0, NULL) < 0)
        rp_pgclient_fail(&c->client, NULL);
}

static void step_timer(rp_cluster *c)
{
    if (c->state == CL_IDLE) {
        start_round(c);
    } else if (c->state == CL_SETUP && !c->in_flight) {
        connected(c); /* retry the setup */
    } else if (c->state == CL_RELEASING) {
        set_state(c, CL_CLOSED);
    } else if (c->state != CL_OFFLINE) {
        static const char *const what[] = {
            "", "creating the schema", "reading the members", "taking the leases", "", "", ""};
        char why[96];
        snprintf(why, sizeof(why), "no answer from the cluster database while %s", what[c->state]);
        rp_pgclient_fail(&c->client, why);
    }
}

static void step(rp_cluster *c, cl_event ev)
{
    if (c->state == CL_CLOSED)
        return;
    switch (ev) {
    case EV_UP:
        connected(c);
        break;
    case EV_DOWN:
        went_down(c);
        break;
    case EV_IO:
        if (c->in_flight)
            pump(c);
        else if (c->state != CL_OFFLINE && !PQconsumeInput(c->client.conn))
            rp_pgclient_fail(&c->client, NULL); /* idle: a notice, or the server closing */
        break;
    case EV_TIMER:
        step_timer(c);
        break;
    case EV_RESULT:
        if (c->close_due) { /* the round ended: now give the leases back */
            take_result_done(c);
            set_state(c, CL_IDLE);
            c->close_due = false;
            rp_cluster_close(c, NULL, NULL);
        } else if (c->state == CL_RELEASING) {
            take_result_done(c);
            set_state(c, CL_CLOSED);
        } else {
            step_result(c);
        }
        break;
    }
    if (c->state == CL_CLOSED && c->pending_closes == 0 && c->closed_cb)
        rp_cluster_close(c, NULL, NULL); /* the release finished: close for real */
}

static void on_client(void *owner, rp_pgclient_event ev)
{
    step(owner, ev == RP_PGCLIENT_EV_UP ? EV_UP : ev == RP_PGCLIENT_EV_IO ? EV_IO : EV_DOWN);
}

/*-------------------------------------------------------------------------
 * Interface
 *-------------------------------------------------------------------------
 */

int rp_cluster_open(uv_loop_t *loop, const rp_cluster_opts *o, rp_cluster_changed_cb cb, void *arg,
                    rp_cluster **out)
{
    rp_cluster *c = rp_calloc(1, sizeof(*c));
    c->loop = loop;
    c->uri = rp_strdup(o->uri);
    c->instance = rp_strdup(o->instance);
    c->ttl_ms = o->ttl_ms;
    int64_t r = o->ttl_ms / 6;
    c->round_ms = (int)(r < 250 ? 250 : r > 5000 ? 5000 : r);
    c->deadline_ms = o->connect_timeout_ms;
    c->next_fetch = o->next_fetch;
    c->cb = cb;
    c->arg = arg;
    rp_pgclient_opts co = {.application_name = "pgreaper-cluster",
                           .connect_timeout_ms = o->connect_timeout_ms,
                           .backoff_min_ms = 250,
                           .backoff_max_ms = 2000,
                           .jitter_seed = rp_hash_str(RP_HASH_INIT, o->instance),
                           .admit = o->admit,
                           .admit_first = true};
    rp_pgclient_init(&c->client, loop, c->uri, &co, on_client, c);
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->fence_timer);
    c->timer.data = c->fence_timer.data = c;
    rp_pgclient_connect(&c->client);
    *out = c;
    return 0;
}

void rp_cluster_set_sources(rp_cluster *c, const char *const *names, size_t n)
{
    free_names(c->cands, c->ncands);
    c->cands = rp_calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        c->cands[i] = rp_strdup(names[i]);
    qsort(c->cands, n, sizeof(char *), cmp_str);
    c->ncands = n;
}

bool rp_cluster_holds(const rp_cluster *c, const char *name)
{
    return uv_now(c->loop) < c->fence && has_name(c->held, c->nheld, name);
}

bool rp_cluster_resume_of(const rp_cluster *c, const char *name, rp_sched_resume *out)
{
    takeover key = {.name = (char *)name};
    const takeover *t =
        c->ntaken ? bsearch(&key, c->taken, c->ntaken, sizeof(takeover), cmp_taken) : NULL;
    if (t)
        *out = t->at;
    return t != NULL;
}

const uint64_t *rp_cluster_fence(const rp_cluster *c)
{
    return &c->fence;
}

void rp_cluster_stats(const rp_cluster *c, size_t *members, size_t *held, uint64_t *rounds,
                      uint64_t *failed_rounds)
{
    *members = c->nmembers;
    *held = c->nheld;
    *rounds = c->rounds;
    *failed_rounds = c->failed_rounds;
}

static void free_cluster(rp_cluster *c)
{
    void (*cb)(void *) = c->closed_cb;
    void *arg = c->closed_arg;
    free_names(c->cands, c->ncands);
    free_names(c->held, c->nheld);
    free_taken(c);
    rp_free(c->uri);
    rp_free(c->instance);
    rp_free(c);
    if (cb)
        cb(arg);
}

static void on_part_closed(void *owner)
{
    rp_cluster *c = owner;
    if (--c->pending_closes == 0)
        free_cluster(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    on_part_closed(h->data);
}

void rp_cluster_close(rp_cluster *c, void (*cb)(void *arg), void *arg)
{
    if (cb) {
        c->closed_cb = cb;
        c->closed_arg = arg;
    }
    if (c->in_flight && (c->state == CL_MEMBERS || c->state == CL_LEASES)) {
        c->close_due = true; /* released when the round's answer is in (or its deadline) */
        return;
    }
    if (c->state == CL_IDLE && c->setup_done) { /* give the leases back first */
        const char *params[1] = {c->instance};
        c->fence = 0;
        set_state(c, CL_RELEASING);
        if (send_query(c, release_sql, 1, params) == 0)
            return;
        set_state(c, CL_CLOSED);
    }
    if (c->pending_closes)
        return;
    set_state(c, CL_CLOSED);
    c->fence = 0;
    c->pending_closes = 3;
    rp_pgclient_close(&c->client, on_part_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->fence_timer, on_handle_closed);
}
