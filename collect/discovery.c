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

#include "collect/patroni.h"
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
    char **dbs;        /* the last good list: "<name suffix>\t<conn_str>[\t<role>]" (owned) */
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
    bool patroni, only_primary;
    char **dbs; /* "<name suffix>\t<conn_str>[\t<role>]" */
    size_t ndbs, cap;
    char **failed; /* patroni: name prefixes of members that could not be listed */
    size_t nfailed, cap_failed;
    int rc;
    char err[512];
    char member_err[640]; /* the first member's failure */
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
    free_list(j->failed, j->nfailed);
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

static void add_item(job *j, const char *prefix, const char *db, const char *conn, const char *role)
{
    char *dc = NULL, err[256];
    if (rp_connstr_with_dbname(conn, db, &dc, err, sizeof(err)) < 0)
        return; /* conn was accepted by libpq a moment ago */
    rp_buf b = RP_BUF_INIT;
    rp_buf_printf(&b, "%s%s\t%s%s%s", prefix, db, dc, role ? "\t" : "", role ? role : "");
    rp_free(dc);
    rp_grow((void **)&j->dbs, &j->cap, j->ndbs + 1, sizeof(char *));
    j->dbs[j->ndbs++] = b.data;
}

static int list_query(job *j, PGconn *c, const char *conn, const char *prefix, const char *role)
{
    char why[400], set[64];
    snprintf(set, sizeof(set), "set statement_timeout = %d", j->timeout_s * 1000);
    PQclear(PQexec(c, set));
    const char *params[2] = {j->include ? j->include : "", j->exclude ? j->exclude : ""};
    PGresult *res = PQexecParams(c, list_sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(j->err, sizeof(j->err), "could not list the databases: %s",
                 rp_pgconn_error(c, conn, why, sizeof(why)));
        PQclear(res);
        return -EIO;
    }
    for (int i = 0; i < PQntuples(res); i++)
        add_item(j, prefix, PQgetvalue(res, i, 0), conn, role);
    PQclear(res);
    return 0;
}

/* The databases of the server conn reaches, as items named prefix + dbname (with the
 * server's role when a DCS told it). */
static int list_server(job *j, const char *conn, const char *prefix, const char *role)
{
    char timeout[16], why[400];
    snprintf(timeout, sizeof(timeout), "%d", j->timeout_s);
    const char *kw[] = {"dbname", "connect_timeout", "fallback_application_name", NULL};
    const char *val[] = {conn, timeout, "pgreaper-discovery", NULL};
    PGconn *c = PQconnectdbParams(kw, val, 1);
    int rc;
    if (!c || PQstatus(c) != CONNECTION_OK) {
        snprintf(j->err, sizeof(j->err), "could not connect: %s",
                 c ? rp_pgconn_error(c, conn, why, sizeof(why)) : "out of memory");
        rc = -EIO;
    } else {
        rc = list_query(j, c, conn, prefix, role);
    }
    PQfinish(c);
    return rc;
}

/* A Patroni cluster: its members from etcd, then each member's databases, named
 * <member>_<dbname> (<scope>_<member>_<dbname> for a whole namespace), as pgwatch does. A
 * member that cannot be listed keeps what was found for it before (see list_taken). */
static int list_patroni(job *j)
{
    rp_patroni_members m;
    int rc = rp_patroni_read(j->conn_str, j->timeout_s, &m, j->err, sizeof(j->err));
    for (size_t i = 0; rc == 0 && i < m.n; i++) {
        const rp_patroni_member *mb = &m.v[i];
        if (j->only_primary && !mb->primary)
            continue;
        rp_buf prefix = RP_BUF_INIT;
        rp_buf_printf(&prefix, "%s%s%s_", m.scoped ? "" : mb->scope, m.scoped ? "" : "_", mb->name);
        if (list_server(j, mb->conn_url, prefix.data, mb->primary ? "primary" : "replica") < 0) {
            if (!j->member_err[0])
                snprintf(j->member_err, sizeof(j->member_err), "member %.64s: %s", mb->name,
                         j->err);
            j->err[0] = '\0';
            rp_grow((void **)&j->failed, &j->cap_failed, j->nfailed + 1, sizeof(char *));
            j->failed[j->nfailed++] = prefix.data;
        } else {
            rp_buf_fini(&prefix);
        }
    }
    rp_patroni_members_free(&m);
    return rc;
}

static void list_work(uv_work_t *w)
{
    job *j = rp_container_of(w, job, work);
    j->rc = j->patroni ? list_patroni(j) : list_server(j, j->conn_str, "", NULL);
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

/* One source for an item ("<suffix>\t<conn_str>") of entry e into *out; false when it
 * cannot be named. */
static bool make_source(const entry *e, const char *item, rp_source_def *out)
{
    size_t n = strcspn(item, "\t");
    char *db = rp_malloc(n + 1);
    memcpy(db, item, n);
    db[n] = '\0';
    size_t len = strlen(e->def.name) + 1 + n + 1;
    char *name = rp_malloc(len);
    snprintf(name, len, "%s_%s", e->def.name, db);
    bool ok = usable_name(e, db, name) && item[n] == '\t';
    rp_free(db);
    if (!ok) {
        rp_free(name);
        return false;
    }
    const char *c = item + n + 1, *role = strchr(c, '\t');
    char *conn = rp_strndup(c, role ? (size_t)(role - c) : strlen(c));
    rp_source_def_copy(out, &e->def);
    rp_free(out->name);
    rp_free(out->conn_str);
    rp_free(out->kind);
    out->name = name;
    out->conn_str = conn;
    out->kind = rp_strdup("postgres");
    rp_free(out->role_hint);
    out->role_hint = role ? rp_strdup(role + 1) : NULL;
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

/* Items of a missing from b: by name only (names_only) or whole (conn_str and role). */
static size_t count_missing(char **a, size_t na, char **b, size_t nb, bool names_only)
{
    size_t missing = 0;
    for (size_t i = 0; i < na; i++) {
        bool found = false;
        size_t n = names_only ? strcspn(a[i], "\t") : strlen(a[i]);
        for (size_t k = 0; k < nb && !found; k++)
            found = strncmp(a[i], b[k], n) == 0 && (b[k][n] == '\0' || names_only) &&
                    strcspn(b[k], names_only ? "\t" : "") == n;
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

/* Patroni members that could not be listed keep the databases found for them before. */
static void keep_failed_members(entry *e, job *j)
{
    for (size_t i = 0; i < e->ndbs; i++) {
        for (size_t f = 0; f < j->nfailed; f++) {
            if (strncmp(e->dbs[i], j->failed[f], strlen(j->failed[f])) != 0)
                continue;
            rp_grow((void **)&j->dbs, &j->cap, j->ndbs + 1, sizeof(char *));
            j->dbs[j->ndbs++] = rp_strdup(e->dbs[i]);
            break;
        }
    }
    uint64_t h = j->member_err[0] ? rp_hash_str(RP_HASH_INIT, j->member_err) : 0;
    if (h && h != e->err_hash)
        rp_log_at(RP_LOG_ERROR, e->def.name, NULL, j->member_err,
                  "could not list the databases of %zu Patroni members: what was found for "
                  "them before stays monitored",
                  j->nfailed);
    e->err_hash = h;
}

/* A listing that worked: take it when it differs from the last one. */
static void list_taken(rp_discovery *d, entry *e, job *j)
{
    if (e->err_hash && !j->nfailed)
        rp_log_at(RP_LOG_INFO, e->def.name, NULL, NULL, "database discovery works again");
    if (j->patroni)
        keep_failed_members(e, j);
    else
        e->err_hash = 0;
    if (j->ndbs == e->ndbs && count_missing(j->dbs, j->ndbs, e->dbs, e->ndbs, false) == 0)
        return;
    size_t added = count_missing(j->dbs, j->ndbs, e->dbs, e->ndbs, true);
    size_t gone = count_missing(e->dbs, e->ndbs, j->dbs, j->ndbs, true);
    rp_log_at(RP_LOG_INFO, e->def.name, NULL, NULL,
              "database discovery: %zu databases (%zu new, %zu gone, %zu changed)", j->ndbs, added,
              gone, count_missing(j->dbs, j->ndbs, e->dbs, e->ndbs, false) - added);
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
    j->patroni = rp_source_def_patroni(&e->def);
    j->only_primary = e->def.only_if_master;
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
