/* SPDX-License-Identifier: PostgreSQL
 *
 * A source of kind prometheus: its conn_str is the URL of a Prometheus text endpoint
 * (an exporter's /metrics), scraped on the loop (collect/httpget.h), every family stored
 * as a metric of its own as pgwatch's prometheus kind stores it (collect/promtext.h).
 * The families kept and their intervals are the source's custom_metrics (family:
 * seconds; 0 leaves one out) over its preset's metrics; with neither, every family every
 * 60 s, as pgwatch does. One scrape per tick of the intervals' GCD serves every family
 * due then; a scrape still running at the next tick makes it skip (counted).
 *
 * A scrape that fails (connection, --statement-timeout, HTTP status, more than 3
 * redirects, a body over --result-max-bytes) is logged once per distinct error, counted
 * as a fetch error, and stores nothing; a family over --result-max-rows or with a line
 * that does not parse is left out of that scrape, said once until it changes. Loop
 * thread only.
 */
#ifndef RP_COLLECT_PROMSOURCE_H
#define RP_COLLECT_PROMSOURCE_H

#include "collect/source.h"

/* The collector of prometheus sources (opts->http must be set). */
extern const rp_collector_ops rp_promsource_ops;

#endif /* RP_COLLECT_PROMSOURCE_H */
