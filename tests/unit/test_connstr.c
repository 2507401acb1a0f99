/* SPDX-License-Identifier: PostgreSQL
 *
 * Password masking and scrubbing in connection strings, environment expansion.
 */
#include <stdlib.h>
#include <string.h>

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

    ok(rp_connstr_with_dbname("postgresql://u:pw@h:5433/one?sslmode=disable", "it's", &out, err,
                              sizeof(err)) == 0,
       "with_dbname: URI");
    is_str(out, "user='u' password='pw' host='h' port='5433' sslmode='disable' dbname='it\\'s'",
           "with_dbname: every parameter kept, dbname replaced and quoted");
    rp_free(out);
    ok(rp_connstr_with_dbname("host=/tmp dbname=x application_name='a b'", "y\\z", &out, err,
                              sizeof(err)) == 0,
       "with_dbname: key=value");
    is_str(out, "host='/tmp' application_name='a b' dbname='y\\\\z'",
           "with_dbname: backslash escaped");
    rp_free(out);
    ok(rp_connstr_with_dbname("postgresql://u:s3cr%zz@h/db", "x", &out, err, sizeof(err)) < 0,
       "with_dbname: a string libpq refuses");
    ok(strstr(err, "s3cr") == NULL && err[0], "with_dbname: the reason, password scrubbed");
    rp_buf_fini(&b);
    return done_testing();
}
