/* SPDX-License-Identifier: PostgreSQL
 *
 * Profile encoder and HTTP request parser: the builder's output, gunzipped and decoded
 * with protobuf-c, follows every rule go tool pprof enforces (string_table[0] = "", ids
 * non-zero and unique, every referenced id exists, one value per sample type, mappings
 * complete), symbolizes this test's own static function, and carries labels; the
 * request parser accepts what it should and rejects the rest.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "pprof/httpreq.h"
#include "pprof/pbuild.h"
#include "pprof/profile.pb-c.h"
#include "pprof/stack.h"
#include "tests/lib/tap.h"

typedef Perftools__Profiles__Profile Prof;

static Prof *decode(const rp_buf *gz)
{
    return rp_pbuild_decode(gz->data, gz->len);
}

static __attribute__((noinline)) int known_static_fn(uintptr_t *pcs)
{
    int n = rp_stack_here(pcs, RP_STACK_MAX, 0);
    __asm__ volatile("" ::"r"(n) : "memory"); /* no tail call: keep this frame */
    return n;
}

static const char *str(const Prof *p, int64_t i)
{
    return i >= 0 && (size_t)i < p->n_string_table ? p->string_table[i] : "<bad index>";
}

static const Perftools__Profiles__Location *loc(const Prof *p, uint64_t id)
{
    for (size_t i = 0; i < p->n_location; i++)
        if (p->location[i]->id == id)
            return p->location[i];
    return NULL;
}

static const char *fn_name(const Prof *p, uint64_t id)
{
    for (size_t i = 0; i < p->n_function; i++)
        if (p->function[i]->id == id)
            return str(p, p->function[i]->name);
    return NULL;
}

static bool ids_ok(const Prof *p)
{
    for (size_t i = 0; i < p->n_location; i++) {
        if (p->location[i]->id != i + 1 || p->location[i]->n_line < 1) /* > 1: inlined */
            return false;
        for (size_t k = 0; k < p->location[i]->n_line; k++)
            if (!fn_name(p, p->location[i]->line[k]->function_id))
                return false;
    }
    for (size_t i = 0; i < p->n_function; i++)
        if (p->function[i]->id != i + 1)
            return false;
    for (size_t i = 0; i < p->n_mapping; i++)
        if (p->mapping[i]->id != i + 1 || !p->mapping[i]->has_functions)
            return false;
    for (size_t i = 0; i < p->n_sample; i++) {
        if (p->sample[i]->n_value != p->n_sample_type)
            return false;
        for (size_t k = 0; k < p->sample[i]->n_location_id; k++)
            if (!loc(p, p->sample[i]->location_id[k]))
                return false;
    }
    return true;
}

static Prof *build_sample_profile(rp_buf *gz)
{
    uintptr_t pcs[RP_STACK_MAX];
    uint64_t locs[RP_STACK_MAX + 1];
    int depth = known_static_fn(pcs);
    rp_pbuild *b = rp_pbuild_new();
    rp_pbuild_sample_type(b, "alloc_objects", "count");
    rp_pbuild_sample_type(b, "alloc_space", "bytes");
    rp_pbuild_period(b, "space", "bytes", 524288);
    rp_pbuild_default_type(b, "alloc_space");
    rp_pbuild_comment(b, "test");
    int64_t v[2] = {3, 300};
    size_t n = rp_pbuild_stack(b, pcs, (size_t)depth, false, locs);
    size_t s = rp_pbuild_sample(b, locs, n, v);
    rp_pbuild_label_str(b, s, "kind", "thread");
    rp_pbuild_label_num(b, s, "age_ms", 1234, "milliseconds");
    locs[0] = rp_pbuild_loc_named(b, "state:busy");
    locs[1] = rp_pbuild_loc_named(b, "event loop");
    locs[2] = rp_pbuild_loc_named(b, "state:busy"); /* deduplicated */
    rp_pbuild_sample(b, locs, 3, v);
    rp_pbuild_sample(b, NULL, 0, v); /* no stack: allowed */
    int rc = rp_pbuild_finish(b, gz);
    rp_pbuild_free(b);
    return rc == 0 ? decode(gz) : NULL;
}

static void test_encoder(void)
{
    rp_buf gz = RP_BUF_INIT;
    Prof *p = build_sample_profile(&gz);
    ok(gz.len > 2 && (unsigned char)gz.data[0] == 0x1f && (unsigned char)gz.data[1] == 0x8b,
       "output is gzip");
    ok(p != NULL, "decodes with protobuf-c");
    if (!p) {
        rp_buf_fini(&gz);
        return;
    }
    ok(p->n_string_table > 0 && strcmp(p->string_table[0], "") == 0, "string_table[0] is empty");
    ok(ids_ok(p), "ids are 1..n, references resolve, one value per sample type");
    ok(p->n_sample == 3 && p->n_sample_type == 2, "3 samples, 2 sample types");
    ok(strcmp(str(p, p->sample_type[1]->type), "alloc_space") == 0 &&
           strcmp(str(p, p->sample_type[1]->unit), "bytes") == 0,
       "sample type alloc_space/bytes");
    ok(strcmp(str(p, p->default_sample_type), "alloc_space") == 0, "default sample type");
    ok(p->period == 524288 && strcmp(str(p, p->period_type->type), "space") == 0, "period");
    ok(p->time_nanos > 0 && p->n_comment == 1, "time and comment");
    const Perftools__Profiles__Location *leaf = loc(p, p->sample[0]->location_id[0]);
    ok(leaf && strcmp(fn_name(p, leaf->line[0]->function_id), "known_static_fn") == 0,
       "leaf frame names the static function");
    ok(leaf && leaf->mapping_id == 1, "it is in mapping 1");
    ok(p->n_mapping >= 2 && strstr(str(p, p->mapping[0]->filename), "test_pprof") != NULL,
       "mapping[0] is the executable, shared libraries follow");
    ok(p->sample[0]->n_label == 2 && p->sample[0]->label[1]->num == 1234 &&
           strcmp(str(p, p->sample[0]->label[1]->num_unit), "milliseconds") == 0,
       "string and numeric labels");
    const Perftools__Profiles__Location *s0 = loc(p, p->sample[1]->location_id[0]);
    ok(s0 && s0->mapping_id == 0 && s0->address == 0 &&
           strcmp(fn_name(p, s0->line[0]->function_id), "state:busy") == 0 &&
           p->sample[1]->location_id[0] == p->sample[1]->location_id[2],
       "synthetic frames: no mapping, address 0, deduplicated");
    perftools__profiles__profile__free_unpacked(p, NULL);
    rp_buf_fini(&gz);
}

typedef struct req_case {
    const char *in;
    int want;
    const char *path, *query;
} req_case;

static void test_httpreq(void)
{
    static const req_case cases[] = {
        {"GET /debug/pprof/heap HTTP/1.1\r\nHost: x\r\n\r\n", 1, "/debug/pprof/heap", ""},
        {"GET /debug/pprof/profile?seconds=2 HTTP/1.0\n\n", 1, "/debug/pprof/profile", "seconds=2"},
        {"GET /debug/pprof/heap HTTP/1.1\r\nHost: x\r\n", 0, NULL, NULL},
        {"GET / HTTP/2.0\r\n\r\n", -ENOTSUP, NULL, NULL},
        {"GET nothing HTTP/1.1\r\n\r\n", -EINVAL, NULL, NULL},
        {"get / HTTP/1.1\r\n\r\n", -EINVAL, NULL, NULL},
        {"GET /a b HTTP/1.1\r\n\r\n", -EINVAL, NULL, NULL},
        {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", -EINVAL, NULL, NULL},
        {"GET / HTTP/1.1\r\nContent-Length: x1\r\n\r\n", -EINVAL, NULL, NULL},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", -EINVAL, NULL, NULL},
        {"\r\n\r\n", -EINVAL, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rp_httpreq r;
        int rc = rp_httpreq_parse(cases[i].in, strlen(cases[i].in), &r);
        bool good = rc == cases[i].want && (rc != 1 || (strcmp(r.path, cases[i].path) == 0 &&
                                                        strcmp(r.query, cases[i].query) == 0));
        char name[96];
        snprintf(name, sizeof(name), "request %zu parses to %d (got %d)", i, cases[i].want, rc);
        ok(good, name);
    }
    rp_httpreq r;
    const char *in = "POST /debug/pprof/symbol?token=a%20b&debug=2&x HTTP/1.1\r\n"
                     "Authorization:  Bearer s3cret \r\nContent-Length: 12\r\n\r\n0x1+0x2";
    char v[64];
    ok(rp_httpreq_parse(in, strlen(in), &r) == 1 && r.content_length == 12 &&
           strcmp(r.authorization, "Bearer s3cret") == 0,
       "headers: Authorization trimmed, Content-Length");
    ok(rp_httpreq_param(&r, "token", v, sizeof(v)) == 3 && strcmp(v, "a b") == 0,
       "query parameter percent-decoded");
    ok(rp_httpreq_param(&r, "debug", v, sizeof(v)) == 1 && strcmp(v, "2") == 0, "second parameter");
    ok(rp_httpreq_param(&r, "x", v, sizeof(v)) == 0, "parameter without value");
    ok(rp_httpreq_param(&r, "seconds", v, sizeof(v)) == -ENOENT, "absent parameter");
    static char big[RP_HTTPREQ_MAX_HEAD + 10];
    memset(big, 'a', sizeof(big));
    ok(rp_httpreq_parse(big, sizeof(big), &r) == -E2BIG, "oversized head is refused");
}

int main(void)
{
    rp_stack_init();
    test_encoder();
    test_httpreq();
    return done_testing();
}
