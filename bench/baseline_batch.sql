-- bench/baseline_batch.sql: the baseline for append_batch.sql, one multi-row
-- idempotent INSERT of :n rows per transaction (pgbench -D n=100), the rows
-- generated the same way; count(*) of the returned positions.
WITH ins AS (
    INSERT INTO baseline (id, topic, envelope)
    SELECT (e ->> 'id')::uuid, 'bench', e
      FROM (SELECT jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text)) AS e
              FROM generate_series(1, :n)) AS s
        ON CONFLICT (id) DO NOTHING
    RETURNING position)
SELECT count(*) FROM ins;
