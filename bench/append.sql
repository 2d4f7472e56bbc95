-- bench/append.sql: one eventstore.append per transaction.
SELECT eventstore.append('bench',
    jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text)));
