-- bench/latency_append.sql: one eventstore.append to topic 'latency' per
-- transaction; bench/run runs it at a fixed rate (pgbench --rate) while the
-- in-database consumer bench_latency handles the events.
SELECT eventstore.append('latency',
    jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text)));
