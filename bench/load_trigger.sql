-- bench/load_trigger.sql: the yardstick of bench/run-load: each transaction
-- appends one event to topic @TOPIC@ (replaced with the run's) and does
-- itself what the consumer's handler does with it, one row in load_effects.
WITH ev AS (SELECT jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text)) AS e),
     a AS (SELECT eventstore.append('@TOPIC@', ev.e) AS position, (ev.e->>'id')::uuid AS id FROM ev)
INSERT INTO load_effects (id, position, topic) SELECT a.id, a.position, '@TOPIC@' FROM a;
