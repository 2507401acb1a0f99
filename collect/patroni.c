/* SPDX-License-Identifier: PostgreSQL
 *
 * Patroni members from etcd's v3 JSON API. See patroni.h.
 */
#include "collect/patroni.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/mem.h"

#define MAX_BODY (16u << 20)

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_encode(const char *s, size_t n, rp_buf *out)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        rp_buf_putc(out, b64[v >> 18 & 63]);
        rp_buf_putc(out, b64[v >> 12 & 63]);
        rp_buf_putc(out, i + 1 < n ? b64[v >> 6 & 63] : '=');
        rp_buf_putc(out, i + 2 < n ? b64[v & 63] : '=');
    }
}

/* Decode base64 text into out (NUL-terminated); invalid characters are skipped. */
static void b64_decode(const char *s, rp_buf *out)
{
    uint32_t v = 0;
    int bits = 0;
    for (; *s && *s != '='; s++) {
        const char *c = strchr(b64, *s);
        if (!c || !*c)
            continue;
        v = v << 6 | (uint32_t)(c - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            rp_buf_putc(out, (char)(v >> bits & 0xff));
        }
    }
    if (!out->data)
        rp_buf_puts(out, "");
}

bool rp_patroni_url_ok(const char *s)
{
    return s && (strncmp(s, "etcd://", 7) == 0 || strncmp(s, "etcd3://", 8) == 0);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    rp_buf *b = userdata;
    size_t n = size * nmemb;
    if (b->len + n > MAX_BODY)
        return 0;
    rp_buf_append(b, ptr, n);
    return n;
}

/* POST body to http://endpoint/v3/kv/range into out. 0 or -EIO with err. */
static int post_range(const char *endpoint, const char *body, int timeout_s, rp_buf *out, char *err,
                      size_t errlen)
{
    char url[512];
    snprintf(url, sizeof(url), "http://%s/v3/kv/range", endpoint);
    CURL *e = curl_easy_init();
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)timeout_s);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)timeout_s);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
    CURLcode rc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    if (rc != CURLE_OK || status != 200) {
        snprintf(err, errlen, "etcd at %s: %s", endpoint,
                 rc != CURLE_OK ? (cerr[0] ? cerr : curl_easy_strerror(rc)) : "HTTP error");
        if (rc == CURLE_OK)
            snprintf(err, errlen, "etcd at %s: HTTP status %ld", endpoint, status);
        return -EIO;
    }
    return 0;
}

/* The endpoints (host:port, comma-separated) and the path of an etcd:// URL. */
static int split_url(const char *url, rp_buf *hosts, rp_buf *path, char *err, size_t errlen)
{
    const char *p = strstr(url, "://") + 3;
    const char *end = p + strcspn(p, "/?");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at) /* user:password@ is not used for etcd without TLS here */
        p = at + 1;
    rp_buf_append(hosts, p, (size_t)(end - p));
    size_t plen = *end == '/' ? strcspn(end, "?") : 0;
    rp_buf_append(path, end, plen);
    while (path->len > 1 && path->data[path->len - 1] == '/')
        path->data[--path->len] = '\0';
    if (!hosts->len || path->len < 2) {
        snprintf(err, errlen, "a patroni conn_str is etcd://host:port/namespace[/scope]");
        return -EINVAL;
    }
    return 0;
}

static int cmp_member(const void *a, const void *b)
{
    const rp_patroni_member *x = a, *y = b;
    int c = strcmp(x->scope, y->scope);
    return c ? c : strcmp(x->name, y->name);
}

/* One key/value of the range: a member when the key is <path>[/scope]/members/<name>. */
static void take_kv(rp_patroni_members *m, const char *path, const cJSON *kv)
{
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(kv, "key");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(kv, "value");
    if (!cJSON_IsString(k) || !cJSON_IsString(v))
        return;
    rp_buf key = RP_BUF_INIT, val = RP_BUF_INIT;
    b64_decode(k->valuestring, &key);
    b64_decode(v->valuestring, &val);
    const char *rest = key.data + strlen(path) + 1; /* after "<path>/" */
    char scope[256] = "", name[256] = "";
    if (m->scoped)
        sscanf(rest, "members/%255[^/]", name);
    else
        sscanf(rest, "%255[^/]/members/%255[^/]", scope, name);
    cJSON *doc = name[0] ? cJSON_Parse(val.data) : NULL;
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(doc, "conn_url");
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(doc, "role");
    if (cJSON_IsString(url)) {
        m->v = rp_realloc(m->v, (m->n + 1) * sizeof(rp_patroni_member));
        rp_patroni_member *mb = &m->v[m->n++];
        mb->scope = rp_strdup(m->scoped ? strrchr(path, '/') + 1 : scope);
        mb->name = rp_strdup(name);
        mb->conn_url = rp_strdup(url->valuestring);
        mb->primary = cJSON_IsString(role) && (strcmp(role->valuestring, "master") == 0 ||
                                               strcmp(role->valuestring, "primary") == 0);
    }
    cJSON_Delete(doc);
    rp_buf_fini(&key);
    rp_buf_fini(&val);
}

static int parse_range(rp_patroni_members *m, const char *path, const rp_buf *body, char *err,
                       size_t errlen)
{
    cJSON *doc = cJSON_Parse(body->data ? body->data : "");
    if (!doc) {
        snprintf(err, errlen, "etcd's answer is not JSON");
        return -EIO;
    }
    const cJSON *kvs = cJSON_GetObjectItemCaseSensitive(doc, "kvs");
    const cJSON *kv;
    cJSON_ArrayForEach(kv, kvs) take_kv(m, path, kv);
    cJSON_Delete(doc);
    if (m->n)
        qsort(m->v, m->n, sizeof(rp_patroni_member), cmp_member);
    return 0;
}

int rp_patroni_read(const char *url, int timeout_s, rp_patroni_members *out, char *err,
                    size_t errlen)
{
    memset(out, 0, sizeof(*out));
    rp_buf hosts = RP_BUF_INIT, path = RP_BUF_INIT, req = RP_BUF_INIT, body = RP_BUF_INIT;
    int rc = split_url(url, &hosts, &path, err, errlen);
    /* /namespace/scope names one cluster; /namespace alone every cluster in it */
    const char *second = rc == 0 ? strchr(path.data + 1, '/') : NULL;
    out->scoped = second != NULL;
    if (rc == 0) {
        rp_buf prefix = RP_BUF_INIT;
        rp_buf_printf(&prefix, "%s/", path.data);
        rp_buf_puts(&req, "{\"key\":\"");
        b64_encode(prefix.data, prefix.len, &req);
        prefix.data[prefix.len - 1] = '0'; /* the end of the prefix range: '/' + 1 */
        rp_buf_puts(&req, "\",\"range_end\":\"");
        b64_encode(prefix.data, prefix.len, &req);
        rp_buf_puts(&req, "\"}");
        rp_buf_fini(&prefix);
        rc = -EIO;
        char *save = NULL;
        for (char *h = strtok_r(hosts.data, ",", &save); h && rc < 0;
             h = strtok_r(NULL, ",", &save)) {
            rp_buf_reset(&body);
            rc = post_range(h, req.data, timeout_s, &body, err, errlen);
        }
    }
    if (rc == 0)
        rc = parse_range(out, path.data, &body, err, errlen);
    rp_buf_fini(&hosts);
    rp_buf_fini(&path);
    rp_buf_fini(&req);
    rp_buf_fini(&body);
    return rc;
}

void rp_patroni_members_free(rp_patroni_members *m)
{
    for (size_t i = 0; i < m->n; i++) {
        rp_free(m->v[i].scope);
        rp_free(m->v[i].name);
        rp_free(m->v[i].conn_url);
    }
    rp_free(m->v);
    memset(m, 0, sizeof(*m));
}
