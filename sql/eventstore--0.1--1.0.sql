-- eventstore 0.1 -> 1.0: the first release.
--
-- 0.1 is the development series as it stood before the release work
-- (issue 6); this script holds what that work changed in the SQL objects.
-- A fresh CREATE EXTENSION eventstore runs eventstore--0.1.sql and then this script,
-- so every installation, new or upgraded, goes through the same steps.
-- From 1.0 on, every change to the SQL ships as a further upgrade script
-- (1.0--1.1 and so on), never as an edit of an earlier one.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '1.0'" to load this file. \quit

------------------------------------------------------------------------------
-- Limits and bad input (issue 6): a NULL topic or event id is refused with
-- 22004 naming the argument, as everywhere else, instead of reading as the
-- topic "<NULL>" (42704) or the event <NULL> (42704).  test/sql/limits.sql
-- calls every function with a NULL in each argument.
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION check_topic_grant_args(topic text, privilege text, grantee regrole)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF topic IS NULL THEN
        RAISE EXCEPTION 'topic must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "topic" is NULL.';
    END IF;
    IF privilege IS NULL OR privilege NOT IN ('append', 'read', 'erase') THEN
        RAISE EXCEPTION 'invalid topic privilege'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "privilege" is %s; it must be ''append'', ''read'' or ''erase''.',
                                  coalesce(quote_literal(privilege), 'NULL'));
    END IF;
    IF grantee IS NULL OR grantee::oid = 0 THEN
        RAISE EXCEPTION 'invalid topic grantee'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Argument "grantee" must name a role.';
    END IF;
    IF NOT EXISTS (SELECT FROM eventstore.topics t WHERE t.name = topic) THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object',
                  HINT = format('Create it with eventstore.create_topic(%L).', topic);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION set_topic_version(topic text, current_version text) RETURNS void
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

CREATE OR REPLACE FUNCTION replay_parked(consumer text, event_id uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.lock_consumer(consumer);
    IF event_id IS NULL THEN
        RAISE EXCEPTION 'event_id must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "event_id" is NULL.';
    END IF;
    UPDATE eventstore.parked p SET replay = true
     WHERE p.consumer = replay_parked.consumer AND p.event_id = replay_parked.event_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event % is not parked for consumer "%"', event_id, consumer
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM eventstore.consumers_changed();
END
$$;

CREATE OR REPLACE FUNCTION protect_fields(topic text, subject_path text, paths text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old     eventstore.protections;
    merged  text[];
    p       text;
    q       text;
BEGIN
    IF topic IS NULL THEN
        RAISE EXCEPTION 'topic must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "topic" is NULL.';
    END IF;
    IF NOT EXISTS (SELECT FROM eventstore.topics t WHERE t.name = topic) THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object',
                  HINT = format('Create it with eventstore.create_topic(%L).', topic);
    END IF;
    PERFORM eventstore.check_protect_path('subject_path', subject_path);
    IF paths IS NULL OR cardinality(paths) = 0 OR array_ndims(paths) <> 1 THEN
        RAISE EXCEPTION 'invalid protected paths'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Argument "paths" must be a one-dimensional array of 1 to 16 paths.';
    END IF;
    FOREACH p IN ARRAY paths LOOP
        PERFORM eventstore.check_protect_path('paths', p);
    END LOOP;
    SELECT * INTO old FROM eventstore.protections r WHERE r.topic = protect_fields.topic FOR UPDATE;
    IF FOUND AND old.subject_path <> subject_path THEN
        RAISE EXCEPTION 'invalid subject path'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "subject_path" is %L; topic %L protects the fields of subject %L, which cannot change.',
                                  subject_path, topic, old.subject_path);
    END IF;
    -- Paths only ever grow: a field once protected stays protected, and
    -- older events keep reading.
    merged := ARRAY(SELECT DISTINCT x FROM unnest(coalesce(old.paths, '{}') || paths) AS x ORDER BY x);
    IF cardinality(merged) > 16 THEN
        RAISE EXCEPTION 'invalid protected paths'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "paths" would make %s protected paths on topic %L; at most 16.',
                                  cardinality(merged), topic);
    END IF;
    -- The subject must stay readable, and no field may lie inside another.
    FOREACH p IN ARRAY merged LOOP
        IF p = subject_path OR starts_with(subject_path, p || '.') OR starts_with(p, subject_path || '.') THEN
            RAISE EXCEPTION 'invalid protected paths'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Argument "paths" has %L, which overlaps the subject path %L.', p, subject_path);
        END IF;
        FOREACH q IN ARRAY merged LOOP
            IF starts_with(q, p || '.') THEN
                RAISE EXCEPTION 'invalid protected paths'
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('Argument "paths" has %L inside %L.', q, p);
            END IF;
        END LOOP;
    END LOOP;
    PERFORM eventstore.crypto_schema();
    INSERT INTO eventstore.protections AS r (topic, subject_path, paths)
    VALUES (topic, subject_path, merged)
    ON CONFLICT ON CONSTRAINT protections_pkey DO UPDATE SET paths = EXCLUDED.paths;
    PERFORM eventstore.refresh_archive();
END
$$;
-- End of: limits and bad input.

------------------------------------------------------------------------------
-- pg_dump: the stored events belong in a dump.
--
-- 0.1 left every table out of pg_dump (extension tables are, unless marked),
-- so a logical backup silently held no events.  The tables that only
-- appends write are marked, with the identity sequences that number them:
-- a restored store goes on at the next position and its encrypted fields
-- stay readable.  The tables that scripts fill (topics and their grants,
-- consumers, upcasters, protections) are left to the scripts that created
-- them, so that a restore never collides with rows an extension script
-- such as birdwatch's creates again; README "Backups" says what to re-run.
------------------------------------------------------------------------------

-- One call per statement: each call rewrites the extension's catalog row.
SELECT pg_catalog.pg_extension_config_dump('events', '');
SELECT pg_catalog.pg_extension_config_dump('events_position_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streams', '');
SELECT pg_catalog.pg_extension_config_dump('subject_keys', '');
SELECT pg_catalog.pg_extension_config_dump('subject_keys_key_id_seq', '');
-- End of: pg_dump.
