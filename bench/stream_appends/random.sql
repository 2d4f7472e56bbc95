-- bench/stream_appends/random.sql: one eventstore.append per transaction
-- into a random one of :streams streams, expected_version NULL.
\set s random(1, :streams)
SELECT eventstore.append('bench',
    jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text)),
    'stream-' || :s);
