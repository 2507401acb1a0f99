/* SPDX-License-Identifier: PostgreSQL
 *
 * Database discovery for postgres-continuous-discovery entries. See discovery.h.
 */
#include "collect/discovery.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/compiler.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/mem.h"
#include "pgio/connstr.h"
#include "pgio/pgconn.h"

/* pgwatch's rule; an empty (or blank) pattern filters nothing. */
static const char list_sql[] =
    "select datname from pg_database where not datistemplate and datallowconn "
    "and has_database_privilege(datname, 'CONNECT') "
    "and (trim($1) = '' or datname ~ $1) and (trim($2) = '' or datname !~ $2) order by 1";

#define NAME_MAX_BYTES 63 /* as config.c's rule for source names */

typedef struct entry {
    rp_source_def def; /* a copy */
    char **dbs;        /* the last good list, sorted (owned) */
    size_t ndbs;
    unsigned gen;      /* bumped when the server or the patterns change */
    bool running;      /* a listing is on the pool */
    bool gone;         /* dropped while listing: freed when the listing ends */
    uint64_t err_hash; /* of the last failure logged; 0: the last listing worked */
    struct rp_discovery *owner;
} entry;

struct rp_discovery {
    uv_loop_t *loop;
    int timeout_s;
    rp_discovery_changed_cb changed;
    void *arg;
    entry **v; /* in the order configure gave them */
    size_t n;
    rp_source_def *found; /* what rp_discovery_sources hands out */
    size_t nfound;
    size_t running; /* listings on the pool */
    bool closing;
    uint64_t listings, failures;
};

typedef struct job {
    uv_work_t work;
    entry *e;
    unsigned gen;
    char *conn_str, *include, *exclude; /* copies: the worker never reads e */
    int timeout_s;
    char **dbs;
    size_t ndbs;
    int rc;
    char err[512];
} job;

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rp_free(v[i]);
    rp_free(v);
}

static void free_entry(entry *e)
{
    rp_source_def_fini(&e->def);
    free_list(e->dbs, e->ndbs);
    rp_free(e);
}

static void free_job(job *j)
{
    rp_free(j->conn_str);
    rp_free(j->include);
    rp_free(j->exclude);
    free_list(j->dbs, j->ndbs);
    rp_free(j);
}

static void free_found(rp_discovery *d)
{
    for (size_t i = 0; i < d->nfound; i++)
        rp_source_def_fini(&d->found[i]);
    rp_free(d->found);
    d->found = NULL;
    d->nfound = 0;
}

/*-------------------------------------------------------------------------
 * The listing (a thread-pool thread)
 *-------------------------------------------------------------------------
 */

static int list_query(job *j, PGconn *c)
{
    char why[400], set[64];
    snprintf(set, sizeof(set), "set statement_timeout = %d", j->timeout_s * 1000);
    PQclear(PQexec(c, set));
    const char *params[2] = {j->include ? j->include : "", j->exclude ? j->exclude : ""};
    PGresult *res = PQexecParams(c, list_sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(j->err, sizeof(j->err), "could not list the databases: %s",
                 rp_pgconn_error(c, j->conn_str, why, sizeof(why)));
        PQclear(res);
        return -EIO;
    }
    j->ndbs = (size_t)PQntuples(res);
    j->dbs = rp_calloc(j->ndbs + 1, sizeof(char *));
    for (size_t i = 0; i < j->ndbs; i++)
        j->dbs[i] = rp_strdup(PQgetvalue(res, (int)i, 0));
    PQclear(res);
    return 0;
}

static void list_work(uv_work_t *w)
{
    job *j = rp_container_of(w, job, work);
    char timeout[16], why[400];
    snprintf(timeout, sizeof(timeout), "%d", j->timeout_s);
    const char *kw[] = {"dbname", "connect_timeout", "fallback_application_name", NULL};
    const char *val[] = {j->conn_str, timeout, "pgreaper-discovery", NULL};
    PGconn *c = PQconnectdbParams(kw, val, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        snprintf(j->err, sizeof(j->err), "could not connect: %s",
                 c ? rp_pgconn_error(c, j->conn_str, why, sizeof(why)) : "out of memory");
        j->rc = -EIO;
    } else {
        j->rc = list_query(j, c);
    }
    PQfinish(c);
}

/*-------------------------------------------------------------------------
 * Sources from the lists (the loop)
 *-------------------------------------------------------------------------
 */

static bool usable_name(const entry *e, const char *db, const char *name)
{
    const char *why = NULL;
    if (strlen(name) > NAME_MAX_BYTES)
        why = "would be longer than 63 bytes";
    for (const unsigned char *p = (const unsigned char *)db; !why && *p; p++) {
        if (*p < 0x20 || *p == 0x7F)
            why = "would contain a control character";
    }
    if (why)
        rp_log_at(RP_LOG_WARN, e->def.name, NULL, NULL,
                  "database \"%s\" is left out: the source name \"%s\" %s", db, name, why);
    return why == NULL;
}

/* One source for database db of entry e into *out; false when it cannot be named. */
static bool make_source(const entry *e, const char *db, rp_source_def *out)
{
    size_t len = strlen(e->def.name) + 1 + strlen(db) + 1;
    char *name = rp_malloc(len);
    snprintf(name, len, "%s_%s", e->def.name, db);
    char *conn = NULL, err[256];
    if (!usable_name(e, db, name) ||
        rp_connstr_with_dbname(e->def.conn_str, db, &conn, err, sizeof(err)) < 0) {
        rp_free(name);
        return false;
    }
    rp_source_def_copy(out, &e->def);
    rp_free(out->name);
    rp_free(out->conn_str);
    rp_free(out->kind);
    out->name = name;
    out->conn_str = conn;
    out->kind = rp_strdup("postgres");
    return true;
}

static void rebuild(rp_discovery *d)
{
    free_found(d);
    size_t total = 0;
    for (size_t i = 0; i < d->n; i++)
        total += d->v[i]->ndbs;
    d->found = rp_calloc(total + 1, sizeof(rp_source_def));
    for (size_t i = 0; i < d->n; i++) {
        const entry *e = d->v[i];
        for (size_t k = 0; k < e->ndbs; k++)
            d->nfound += make_source(e, e->dbs[k], &d->found[d->nfound]);
    }
}

static size_t count_missing(char **a, size_t na, char **b, size_t nb)
{
    size_t missing = 0;
    for (size_t i = 0; i < na; i++) {
        bool found = false;
        for (size_t k = 0; k < nb && !found; k++)
            found = strcmp(a[i], b[k]) == 0;
        missing += !found;
    }
    return missing;
}

static void list_failed(rp_discovery *d, entry *e, const job *j)
{
    d->failures++;
    uint64_t h = rp_hash_str(RP_HASH_INIT, j->err);
    if (h != e->err_hash)
        rp_log_at(RP_LOG_ERROR, e->def.name, NULL, j->err,
                  "database discovery failed: the %zu databases found before stay monitored",
                  e->ndbs);
    e->err_hash = h;
}

/* A listing that worked: take it when it differs from the last one. */
static void list_taken(rp_discovery *d, entry *e, job *j)
{
    if (e->err_hash)
        rp_log_at(RP_LOG_INFO, e->def.name, NULL, NULL, "database discovery works again");
    e->err_hash = 0;
    size_t added = count_missing(j->dbs, j->ndbs, e->dbs, e->ndbs);
    size_t gone = count_missing(e->dbs, e->ndbs, j->dbs, j->ndbs);
    if (added == 0 && gone == 0)
        return;
    rp_log_at(RP_LOG_INFO, e->def.name, NULL, NULL,
              "database discovery: %zu databases (%zu new, %zu gone)", j->ndbs, added, gone);
    free_list(e->dbs, e->ndbs);
    e->dbs = j->dbs;
    e->ndbs = j->ndbs;
    j->dbs = NULL;
    j->ndbs = 0;
    rebuild(d);
    d->changed(d->arg);
}

static void start_listing(rp_discovery *d, entry *e);

static void list_done(uv_work_t *w, int status)
{
    job *j = rp_container_of(w, job, work);
    entry *e = j->e;
    rp_discovery *d = e->owner;
    e->running = false;
    d->running--;
    if (!e->gone && !d->closing && status == 0) {
        d->listings++;
        if (j->gen != e->gen)
            start_listing(d, e); /* the server or patterns changed meanwhile */
        else if (j->rc < 0)
            list_failed(d, e, j);
        else
            list_taken(d, e, j);
    }
    free_job(j);
    if (e->gone)
        free_entry(e);
    if (d->closing && d->running == 0) {
        free_found(d);
        rp_free(d->v);
        rp_free(d);
    }
}

static void start_listing(rp_discovery *d, entry *e)
{
    if (e->running || d->closing)
        return;
    job *j = rp_calloc(1, sizeof(*j));
    j->e = e;
    j->gen = e->gen;
    j->conn_str = rp_strdup(e->def.conn_str);
    j->include = e->def.include_pattern ? rp_strdup(e->def.include_pattern) : NULL;
    j->exclude = e->def.exclude_pattern ? rp_strdup(e->def.exclude_pattern) : NULL;
    j->timeout_s = d->timeout_s;
    int rc = uv_queue_work(d->loop, &j->work, list_work, list_done);
    if (rc < 0) {
        rp_log_at(RP_LOG_ERROR, e->def.name, NULL, NULL, "database discovery not started: %s",
                  uv_strerror(rc));
        free_job(j);
        return;
    }
    e->running = true;
    d->running++;
}

/*-------------------------------------------------------------------------
 * API
 *-------------------------------------------------------------------------
 */

rp_discovery *rp_discovery_create(uv_loop_t *loop, int connect_timeout_s,
                                  rp_discovery_changed_cb changed, void *arg)
{
    rp_discovery *d = rp_calloc(1, sizeof(*d));
    d->loop = loop;
    d->timeout_s = connect_timeout_s > 0 ? connect_timeout_s : 10;
    d->changed = changed;
    d->arg = arg;
    return d;
}

static bool str_eq(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

static entry *take_entry(rp_discovery *d, const char *name)
{
    for (size_t i = 0; i < d->n; i++) {
        entry *e = d->v[i];
        if (e && strcmp(e->def.name, name) == 0) {
            d->v[i] = NULL;
            return e;
        }
    }
    return NULL;
}

/* e takes def's settings and is listed again when its server or patterns changed. A new
 * server forgets the databases of the old one; new patterns keep them until the listing
 * with the new ones worked (a broken pattern loses nothing). */
static void reconfigure(rp_discovery *d, entry *e, const rp_source_def *def)
{
    bool moved = !rp_source_def_same_connection(&e->def, def);
    bool relist = moved || !str_eq(e->def.include_pattern, def->include_pattern) ||
                  !str_eq(e->def.exclude_pattern, def->exclude_pattern);
    rp_source_def_fini(&e->def);
    rp_source_def_copy(&e->def, def);
    if (!relist)
        return;
    e->gen++;
    e->err_hash = 0;
    if (moved) {
        free_list(e->dbs, e->ndbs);
        e->dbs = NULL;
        e->ndbs = 0;
    }
    start_listing(d, e);
}

void rp_discovery_configure(rp_discovery *d, const rp_source_def *const *entries, size_t n)
{
    entry **v = rp_calloc(n + 1, sizeof(entry *));
    for (size_t i = 0; i < n; i++) {
        entry *e = take_entry(d, entries[i]->name);
        if (e) {
            reconfigure(d, e, entries[i]);
        } else {
            e = rp_calloc(1, sizeof(*e));
            e->owner = d;
            rp_source_def_copy(&e->def, entries[i]);
            start_listing(d, e);
        }
        v[i] = e;
    }
    for (size_t i = 0; i < d->n; i++) { /* the entries no longer given */
        if (d->v[i] && d->v[i]->running)
            d->v[i]->gone = true;
        else if (d->v[i])
            free_entry(d->v[i]);
    }
    rp_free(d->v);
    d->v = v;
    d->n = n;
    rebuild(d);
}

void rp_discovery_refresh(rp_discovery *d)
{
    for (size_t i = 0; i < d->n; i++)
        start_listing(d, d->v[i]);
}

const rp_source_def *rp_discovery_sources(const rp_discovery *d, size_t *n)
{
    *n = d ? d->nfound : 0;
    return d ? d->found : NULL;
}

void rp_discovery_stats(const rp_discovery *d, size_t *entries, uint64_t *listings,
                        uint64_t *failures)
{
    *entries = d ? d->n : 0;
    *listings = d ? d->listings : 0;
    *failures = d ? d->failures : 0;
}

void rp_discovery_close(rp_discovery *d)
{
    if (!d)
        return;
    d->closing = true;
    for (size_t i = 0; i < d->n; i++) {
        if (d->v[i]->running)
            d->v[i]->gone = true;
        else
            free_entry(d->v[i]);
    }
    d->n = 0;
    if (d->running > 0)
        return; /* list_done frees d with the last listing */
    free_found(d);
    rp_free(d->v);
    rp_free(d);
}
