-- bench/stream_appends/none.sql: one eventstore.append without a stream per
-- transaction (the baseline of the stream appends).
SELECT eventstore.append('bench',
    jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text)));
