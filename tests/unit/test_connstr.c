/* SPDX-License-Identifier: PostgreSQL
 *
 * Password masking and scrubbing in connection strings, environment expansion.
 */
#include <stdlib.h>

#include "common/buf.h"
#include "common/mem.h"
#include "pgio/connstr.h"
#include "tests/lib/tap.h"

static const char *mask(rp_buf *b, const char *in)
{
    rp_buf_reset(b);
    rp_connstr_mask(in, b);
    return b->data;
}

int main(void)
{
    rp_buf b = RP_BUF_INIT;
    is_str(mask(&b, "postgresql://u:s3cret@h:5432/db"), "postgresql://u:****@h:5432/db",
           "URI password");
    is_str(mask(&b, "postgres://u:p%40ss@h1,h2/db?sslmode=require&password=two"),
           "postgres://u:****@h1,h2/db?sslmode=require&password=****",
           "URI password and password parameter");
    is_str(mask(&b, "postgresql://u@h/db?password=x"), "postgresql://u@h/db?password=****",
           "URI without userinfo password");
    is_str(mask(&b, "postgresql://h/db"), "postgresql://h/db", "URI without user");
    is_str(mask(&b, "host=h password=abc user=u"), "host=h password=**** user=u", "kv bare");
    is_str(mask(&b, "host=h password = 'a b\\' c' user=u"), "host=h password = **** user=u",
           "kv quoted with spaces and escapes");
    is_str(mask(&b, "passwordx=1 password=2"), "passwordx=1 password=****",
           "only the password keyword");
    is_str(mask(&b, "host=/tmp dbname=x"), "host=/tmp dbname=x", "nothing to mask");
    rp_buf_reset(&b);
    rp_connstr_scrub("postgresql://u:t%zzop@h/db", "invalid percent-encoded token: \"t%zzop\"", &b);
    is_str(b.data, "invalid percent-encoded token: \"****\"", "scrub removes an echoed password");
    rp_buf_reset(&b);
    rp_connstr_scrub("host=h", "could not connect", &b);
    is_str(b.data, "could not connect", "scrub leaves other messages alone");

    char err[128], *out = NULL;
    setenv("RP_T_HOST", "db.example", 1);
    ok(rp_connstr_expand_env("host=$RP_T_HOST port=${RP_T_HOST}x $$5", &out, err, sizeof(err)) == 0,
       "expand ok");
    is_str(out, "host=db.example port=db.examplex $5", "$VAR, ${VAR} and $$");
    rp_free(out);
    ok(rp_connstr_expand_env("${RP_T_HOST", &out, err, sizeof(err)) < 0, "unterminated ${");
    is_str(err, "unterminated \"${\" in environment variable reference", "unterminated message");
    ok(rp_connstr_expand_env("$", &out, err, sizeof(err)) < 0, "lone $");
    rp_buf_fini(&b);
    return done_testing();
}
