-- bench/baseline_notify.sql: baseline_insert.sql plus pg_notify in the same
-- transaction (one statement, so one round trip like the others): what an
-- append costs when every transaction sends its own NOTIFY.
WITH ins AS (
    INSERT INTO baseline (id, topic, envelope)
    SELECT (e ->> 'id')::uuid, 'bench', e
      FROM (SELECT jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text)) AS e) AS s
        ON CONFLICT (id) DO NOTHING
    RETURNING position)
SELECT position, pg_notify('eventstore', 'bench') FROM ins;
