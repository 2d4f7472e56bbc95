-- sql/eventstore/15_storage.sql: where events are kept.  The tables of
-- topics, events and stream heads, the view and composite type events are read
-- as, the BRIN index consumers find new events by, the trigger that keeps
-- the backends' topic cache fresh, and which of these tables pg_dump holds.

-- Topic and stream names are compared byte-wise (COLLATE "C"): topic names
-- are ASCII by rule, stream names are only ever compared for equality, and
-- a locale's collation would make every index comparison of an append
-- slower for nothing.
CREATE TABLE topics (
    name          text COLLATE "C" PRIMARY KEY
                  CHECK (name ~ '^[a-z][a-z0-9_]*$' AND pg_catalog.length(name) < 64),
    current_major integer NOT NULL CHECK (current_major >= 0),
    current_minor integer NOT NULL CHECK (current_minor >= 0),
    retention     interval CHECK (retention > interval '0'),
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- Roles granted one privilege on this topic alone (grant_topic);
    -- eventstore_writer and eventstore_reader hold it on every topic.
    appenders     regrole[] NOT NULL DEFAULT '{}'
                  CHECK (pg_catalog.cardinality(appenders) <= 16),
    readers       regrole[] NOT NULL DEFAULT '{}'
                  CHECK (pg_catalog.cardinality(readers) <= 16),
    erasers       regrole[] NOT NULL DEFAULT '{}'
                  CHECK (pg_catalog.cardinality(erasers) <= 16)
);
COMMENT ON TABLE topics IS 'topics that events can be appended to, with their current version and per-topic grants';

-- The envelope is stored decomposed: the columns a reader filters on are
-- real columns, and the envelope is rebuilt on read (see stored_events).
CREATE TABLE events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             uuid NOT NULL UNIQUE,
    topic          text COLLATE "C" NOT NULL,
    type           text NOT NULL,
    version_major  integer NOT NULL,
    version_minor  integer NOT NULL,
    data           jsonb NOT NULL,
    metadata       jsonb NOT NULL,
    stream         text COLLATE "C",
    stream_version bigint,
    recorded_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    xid            xid8 NOT NULL,
    CHECK ((stream IS NULL) = (stream_version IS NULL))
);
COMMENT ON TABLE events IS 'every appended event; written only through eventstore.append*';
CREATE INDEX events_topic_position ON events (topic, position);
CREATE UNIQUE INDEX events_stream_version ON events (topic, stream, stream_version)
    WHERE stream IS NOT NULL;
-- The events of one story (read_correlated, extension/correlation.c).
-- Partial: an event without a correlation id costs its append nothing here.
CREATE INDEX events_correlation
    ON events (pg_catalog.lower(metadata OPERATOR(pg_catalog.->>) 'correlation_id'))
    WHERE metadata OPERATOR(pg_catalog.?) 'correlation_id';

-- One row per stream: whether it is closed, how many events it keeps, and
-- the floor of its version.  A stream's version is the greater of that
-- floor and its newest event's stream_version (head_version(),
-- 32_streams.sql): appends write their events and not this row, which
-- keeps the version a stream had reached when its newest events were
-- removed (retention, truncation) or it was erased
-- (extension/stream_head.c).  Readers see it through the view
-- eventstore.streams (32_streams.sql).
CREATE TABLE stream_heads (
    topic         text COLLATE "C" NOT NULL,
    stream        text COLLATE "C" NOT NULL,
    version_floor bigint NOT NULL,
    closed_at     timestamptz,
    -- keep the newest max_count events (set_stream_max_count), NULL: all
    max_count bigint CHECK (max_count >= 1),
    PRIMARY KEY (topic, stream)
);
COMMENT ON TABLE stream_heads IS 'every stream: the floor of its version, when it was closed and how many events it keeps';
-- The streams with a max_count, for the retention task.
CREATE INDEX stream_heads_max_count ON stream_heads (topic, stream) WHERE max_count IS NOT NULL;

-- The events as readers see them: the envelope rebuilt from its columns
-- (and the type as a column of its own, for readers that filter on it).
CREATE VIEW stored_events AS
SELECT e.position,
       e.id,
       e.topic,
       e.stream,
       e.stream_version,
       pg_catalog.jsonb_build_object(
           'id', e.id,
           'type', e.type,
           'version', e.version_major::text OPERATOR(pg_catalog.||) '.'
                      OPERATOR(pg_catalog.||) e.version_minor::text,
           'data', e.data,
           'metadata', e.metadata) AS envelope,
       e.recorded_at,
       e.type
  FROM events e;

CREATE TYPE event AS (
    position       bigint,
    id             uuid,
    topic          text,
    stream         text,
    stream_version bigint,
    envelope       jsonb,
    recorded_at    timestamptz
);
COMMENT ON TYPE event IS 'an event as read: its position, stream and envelope as appended';

-- A consumer's window needs the events by transaction id.  Events are
-- appended in roughly xid order, so a BRIN index serves that for almost no
-- cost on the append path (a btree would cost every append an index
-- insertion).  PostgreSQL has no BRIN operator class for xid8; this one is
-- the stock minmax strategy over xid8's ordering operators.
CREATE OPERATOR CLASS xid8_minmax_ops FOR TYPE xid8 USING brin AS
    OPERATOR 1 pg_catalog.< (xid8, xid8),
    OPERATOR 2 pg_catalog.<= (xid8, xid8),
    OPERATOR 3 pg_catalog.= (xid8, xid8),
    OPERATOR 4 pg_catalog.>= (xid8, xid8),
    OPERATOR 5 pg_catalog.> (xid8, xid8),
    FUNCTION 1 pg_catalog.brin_minmax_opcinfo(internal),
    FUNCTION 2 pg_catalog.brin_minmax_add_value(internal, internal, internal, internal),
    FUNCTION 3 pg_catalog.brin_minmax_consistent(internal, internal, internal),
    FUNCTION 4 pg_catalog.brin_minmax_union(internal, internal, internal);
CREATE INDEX events_xid ON events USING brin (xid xid8_minmax_ops)
    WITH (pages_per_range = 16, autosummarize = on);

-- Topic cache invalidation: backends cache topics; any change to the table
-- tells them to drop the cache (relcache invalidation at commit).
CREATE FUNCTION topics_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_topics_changed';
CREATE TRIGGER topics_changed
    AFTER UPDATE OR DELETE OR TRUNCATE ON topics
    FOR EACH STATEMENT EXECUTE FUNCTION topics_changed();

-- pg_dump: the stored events belong in a dump.  Extension tables are left
-- out of logical dumps unless marked, so the tables that only appends write
-- are marked, with the identity sequence that numbers them: a restored
-- store goes on at the next position.  The tables that scripts fill (topics
-- and their grants, consumers, upcasters, protections) are left to the
-- scripts that created them, so that a restore never collides with rows an
-- extension script such as birdwatch's creates again; README "Backups"
-- says what to re-run.  The keys of protected fields are marked in
-- 55_protection.sql.
-- One call per statement: each call rewrites the extension's catalog row.
SELECT pg_catalog.pg_extension_config_dump('events', '');
SELECT pg_catalog.pg_extension_config_dump('events_position_seq', '');
SELECT pg_catalog.pg_extension_config_dump('stream_heads', '');
