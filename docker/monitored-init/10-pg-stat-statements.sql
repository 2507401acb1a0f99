-- The monitored server: the extension the `full` preset's stat_statements metric reads
-- (shared_preload_libraries is set on the command line in compose.yml).
create extension if not exists pg_stat_statements;
