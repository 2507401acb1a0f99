/* SPDX-License-Identifier: PostgreSQL
 *
 * The members of Patroni clusters as Patroni records them in etcd, for sources of kind
 * patroni (pgwatch's conn_str: etcd://host:port[,host:port...]/namespace/scope, or
 * /namespace alone for every cluster in it). Keys under the path are read with etcd's
 * v3 JSON API (POST /v3/kv/range), trying the endpoints in order; each
 * <namespace>/<scope>/members/<name> value gives the member's conn_url and role.
 * Blocking (libcurl's easy interface): for the discovery's thread-pool jobs only.
 */
#ifndef RP_COLLECT_PATRONI_H
#define RP_COLLECT_PATRONI_H

#include <stdbool.h>
#include <stddef.h>

#include "common/compiler.h"

typedef struct rp_patroni_member {
    char *scope, *name, *conn_url; /* owned */
    bool primary;                  /* role master or primary (the leader) */
} rp_patroni_member;

typedef struct rp_patroni_members {
    rp_patroni_member *v;
    size_t n;
    bool scoped; /* the URL named one cluster (else names carry the scope) */
} rp_patroni_members;

/* Whether s is a DCS URL this module reads (etcd:// or etcd3://). */
bool rp_patroni_url_ok(const char *s);

/* Read the members (sorted by scope, name). 0, or -EINVAL/-EIO with why in err (no
 * password in it). Free with rp_patroni_members_free, also after a failure. */
RP_NODISCARD int rp_patroni_read(const char *url, int timeout_s, rp_patroni_members *out, char *err,
                                 size_t errlen);
void rp_patroni_members_free(rp_patroni_members *m);

#endif /* RP_COLLECT_PATRONI_H */
