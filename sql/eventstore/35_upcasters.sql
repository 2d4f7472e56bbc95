-- sql/eventstore/35_upcasters.sql: versioning.  A topic's current version,
-- and upcasters, which turn an event of an older major version into the
-- next one on the way to consumers (and to readers that ask for it).

CREATE TABLE upcasters (
    topic      text COLLATE "C" NOT NULL REFERENCES topics (name),
    from_major integer NOT NULL CHECK (from_major >= 0),
    to_major   integer NOT NULL,
    fn         text NOT NULL,       -- a regprocedure, kept as text (see consumers.handler)
    run_as     regrole NOT NULL CHECK (run_as::oid <> 0),   -- its registrar; fn runs as this role
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (topic, from_major),
    CHECK (to_major > from_major)
);
COMMENT ON TABLE upcasters IS 'functions that turn an event of from_major into to_major, chained up to the topic''s current major';
-- An upcaster runs as the role that registered it, with search_path fixed
-- to pg_catalog, pg_temp, as a security-restricted operation: it lends its
-- privileges to nobody, and borrows none from the role receiving the event.

-- create_upcaster() (C) checks that the caller may execute fn, then calls
-- this as the extension's owner.
CREATE FUNCTION register_upcaster(topic text, from_major integer, to_major integer,
                                  fn regprocedure, run_as regrole)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p pg_proc;
BEGIN
    IF topic IS NULL THEN
        RAISE EXCEPTION 'topic must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'Argument "topic" is NULL.';
    END IF;
    IF NOT EXISTS (SELECT FROM eventstore.topics t WHERE t.name = topic) THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object',
                  HINT = format('Create it with eventstore.create_topic(%L).', topic);
    END IF;
    IF from_major IS NULL OR to_major IS NULL OR from_major < 0 OR to_major <= from_major THEN
        RAISE EXCEPTION 'invalid upcaster versions'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "to_major" (%s) must be greater than "from_major" (%s), which must be 0 or more.',
                                  coalesce(to_major::text, 'NULL'), coalesce(from_major::text, 'NULL'));
    END IF;
    SELECT * INTO p FROM pg_proc WHERE oid = fn;
    IF NOT FOUND OR p.prokind <> 'f' OR p.pronargs <> 1 OR p.proargtypes[0] <> 'jsonb'::regtype
       OR p.prorettype <> 'jsonb'::regtype OR p.proretset THEN
        RAISE EXCEPTION 'invalid upcaster function'
            USING ERRCODE = 'invalid_function_definition',
                  DETAIL = format('Function %s must be f(jsonb) RETURNS jsonb.', coalesce(fn::text, 'NULL'));
    END IF;
    PERFORM eventstore.check_topics_readable(run_as, ARRAY[topic], 'the upcaster''s registrar');
    -- refused before the insert, which a restore's trigger would make a
    -- replacement (80_restore.sql)
    IF EXISTS (SELECT FROM eventstore.upcasters u
                WHERE u.topic = register_upcaster.topic AND u.from_major = register_upcaster.from_major) THEN
        RAISE unique_violation;
    END IF;
    INSERT INTO eventstore.upcasters (topic, from_major, to_major, fn, run_as)
    VALUES (topic, from_major, to_major, fn::text, run_as);
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'topic "%" has an upcaster from major version % already', topic, from_major
            USING ERRCODE = 'duplicate_object';
END
$$;
CREATE FUNCTION create_upcaster(topic text, from_major integer, to_major integer, fn regprocedure)
RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_create_upcaster';
COMMENT ON FUNCTION create_upcaster(text, integer, integer, regprocedure) IS
    'register fn(envelope jsonb) RETURNS jsonb turning events of topic from from_major to to_major';

CREATE FUNCTION set_topic_version(topic text, current_version text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts text[] := regexp_match(current_version, '^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$');
BEGIN
    IF topic IS NULL THEN
        RAISE EXCEPTION 'topic must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "topic" is NULL.';
    END IF;
    IF parts IS NULL THEN
        RAISE EXCEPTION 'invalid topic version'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Version %L must be "MAJOR.MINOR" with non-negative integers without signs, spaces or leading zeros.', current_version);
    END IF;
    UPDATE eventstore.topics t SET current_major = parts[1]::integer, current_minor = parts[2]::integer
     WHERE t.name = set_topic_version.topic;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;
COMMENT ON FUNCTION set_topic_version(text, text) IS
    'move a topic to a new current version; consumers then receive its events upcast to that major';

CREATE FUNCTION upcast(e event) RETURNS event
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'eventstore_upcast';
COMMENT ON FUNCTION upcast(event) IS
    'the event turned into its topic''s current major version by the registered upcasters';
