/* SPDX-License-Identifier: PostgreSQL
 *
 * Private to the config module (config.c, config_parse.c).
 */
#ifndef RP_CONFIG_CONFIG_INT_H
#define RP_CONFIG_CONFIG_INT_H

#include <stdbool.h>

#include "config/config.h"

bool rp__yaml_is_null(const void *yaml_node);
void rp__catalog_sort(rp_catalog *cat);

#endif /* RP_CONFIG_CONFIG_INT_H */
