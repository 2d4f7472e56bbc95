-- bench/baseline_insert.sql: the baseline for append.sql, one idempotent
-- INSERT per transaction of the same envelope, returning the position.
INSERT INTO baseline (id, topic, envelope)
SELECT (e ->> 'id')::uuid, 'bench', e
  FROM (SELECT jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text)) AS e) AS s
    ON CONFLICT (id) DO NOTHING
RETURNING position;
