-- bench/append_batch.sql: one eventstore.append_batch of :n events per
-- transaction (pgbench -D n=100).  The array is built server-side; count(*)
-- keeps the positions from being sent to the client.
SELECT count(*)
  FROM eventstore.append_batch('bench',
         ARRAY(SELECT jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text))
                 FROM generate_series(1, :n)));
