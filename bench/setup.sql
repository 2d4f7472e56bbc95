-- bench/setup.sql: the tables, topic and envelope template of the benchmark.
-- Run once in the bench database by bench/run; every pgbench script below
-- builds its events from bench_envelope() with a fresh gen_random_uuid().

CREATE EXTENSION IF NOT EXISTS eventstore;
SELECT eventstore.create_topic('bench');

-- The envelope template: a tick event (docs/events.md) of 309 bytes as text.
-- IMMUTABLE and a single SELECT, so the planner inlines and folds it to a
-- constant: it costs both sides the same.
CREATE FUNCTION bench_envelope() RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
SELECT '{"id": "00000000-0000-4000-8000-000000000000", "type": "new", "version": "1.0",
  "data": {"user": {"id": "6f1c2a7e-3b4d-4e5f-9a0b-1c2d3e4f5a6b"},
           "image": {"url": "https://images.birdwatch.example/2024/05/01/blackbird-0042.jpg"}},
  "metadata": {"source": "services/TickAPI", "time": "2024-05-01T12:34:56.789Z"}}'::jsonb
$$;

-- The baseline: a plain table with what eventstore.events must store for an
-- event without a stream (position, unique id, topic, envelope, time) and the
-- same indexes an append maintains for it (primary key, unique id, and
-- (topic, position) like events_topic_position).  No trigger, no function.
CREATE TABLE baseline (
    position    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          uuid NOT NULL UNIQUE,
    topic       text NOT NULL,
    envelope    jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX baseline_topic_position ON baseline (topic, position);
