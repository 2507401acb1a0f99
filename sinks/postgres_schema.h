/* SPDX-License-Identifier: PostgreSQL
 *
 * The PostgreSQL sink's schema: pgwatch's sink schema (admin.storage_schema_type,
 * admin.config, admin.metrics_template, admin.migration ids 0-4, one public."<metric>"
 * table per metric range-partitioned by time into subpartitions with pgwatch's bounds and
 * comments, admin.all_distinct_dbname_metrics, and pgwatch's admin functions), plus
 * pgreaper's admin.pgreaper_writer. The text is sinks/postgres_schema.sql, compiled in by
 * dev/embed.py; it runs as one transaction, idempotently, creating only what is missing,
 * and records its version in admin.config (key pgreaper_schema).
 */
#ifndef RP_SINKS_POSTGRES_SCHEMA_H
#define RP_SINKS_POSTGRES_SCHEMA_H

/* The whole script (static storage; a multi-statement simple query). */
extern const char rp_pg_schema_sql[];

#endif /* RP_SINKS_POSTGRES_SCHEMA_H */
