-- bench/stream_appends/expected.sql: one eventstore.append per transaction
-- with expected_version.  Each client owns :per_client streams of its own and
-- appends to them in turn, so it knows their versions without reading them:
-- its i-th append (:i from 0) goes to its stream i % :per_client, which is at
-- version i / :per_client.  pgbench keeps :i per client.
\set k :i % :per_client
\set v :i / :per_client
SELECT eventstore.append('bench',
    jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text)),
    'client-' || :client_id || '-' || :k, :v);
\set i :i + 1
