-- bench/load_append.sql: one eventstore.append per transaction to topic
-- @TOPIC@, which bench/run-load replaces with the topic of the run.
SELECT eventstore.append('@TOPIC@',
    jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text)));
