/* SPDX-License-Identifier: PostgreSQL
 *
 * Fuzz target: arbitrary bytes as a metrics file and as a sources file, parsed and
 * validated against the built-in catalogue. Must never crash, leak or read out of bounds.
 */
#include <stddef.h>
#include <stdint.h>

#include "common/mem.h"
#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static rp_catalog *builtin;
    rp_diag d;
    rp_diag_init(&d);
    if (!builtin && rp_catalog_parse(NULL, &builtin, &d) < 0)
        return 0;
    rp_catalog *cat = NULL;
    if (rp_catalog_parse_text("fuzz.yaml", (const char *)data, size, &cat, &d) == 0) {
        (void)!rp_catalog_validate(cat, &d);
        rp_catalog_unref(cat);
    }
    rp_source_set *set = NULL;
    d.lenient = size % 2 == 0;
    if (rp_sources_parse_text("fuzz.yaml", (const char *)data, size, &set, &d) == 0) {
        if (rp_sources_validate(set, builtin, &d) == 0) {
            for (size_t i = 0; i < set->nsources; i++) {
                rp_plan_entry *p;
                (void)rp_source_resolve(&set->sources[i], builtin, i % 2, 0.5, &p);
                rp_free(p);
            }
        }
        rp_source_set_free(set);
    }
    rp_diag_fini(&d);
    return 0;
}
