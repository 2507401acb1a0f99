/* SPDX-License-Identifier: PostgreSQL
 *
 * Fuzz target: arbitrary bytes as an HTTP request head for the pprof listener, parsed
 * at every prefix length as bytes trickle in, then every query parameter the listener
 * reads. Must never crash or read out of bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pprof/httpreq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so reading past the input is caught by the sanitizer */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    rp_httpreq req;
    for (size_t n = size > 64 ? size - 64 : 0; n <= size; n++) {
        if (rp_httpreq_parse(buf, n, &req) != 1)
            continue;
        static const char *const names[] = {"debug", "seconds", "token", "gc"};
        char v[64];
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            (void)rp_httpreq_param(&req, names[i], v, sizeof(v));
        break;
    }
    free(buf);
    return 0;
}
