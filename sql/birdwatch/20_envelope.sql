-- sql/birdwatch/20_envelope.sql: what every service shares: the envelope it
-- writes, and the readers of event data that take nothing on trust.

-- Now as RFC 3339 in UTC with microseconds, e.g. 2026-11-27T07:20:32.123456Z.
CREATE FUNCTION rfc3339_now() RETURNS text
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE FUNCTION envelope(id uuid, type text, version text, data jsonb, source text)
RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
               'id', id,
               'type', type,
               'version', version,
               'data', data,
               'metadata', jsonb_build_object('source', source,
                                              'time', birdwatch.rfc3339_now()))
$$;
COMMENT ON FUNCTION envelope(uuid, text, text, jsonb, text) IS
    'an event envelope (docs/events.md) with metadata.source and metadata.time (now, RFC 3339)';

/*
 * Consumers read the data of events that any holder of a topic's append
 * right could have written by hand, so they take nothing on trust: a value
 * of the wrong shape reads as NULL, and the consumer skips what it cannot
 * use instead of failing (and parking) on it.
 */
CREATE FUNCTION as_uuid(v jsonb) RETURNS uuid
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'string'
                 AND v #>> '{}' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN (v #>> '{}')::uuid END
$$;

-- A rating or score: an integer from 1 to 5.
CREATE FUNCTION as_grade(v jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'number' AND v::text IN ('1', '2', '3', '4', '5')
                THEN v::text::integer END
$$;

-- An image URL as TickAPI accepts them (check_image_url), or NULL.
CREATE FUNCTION as_image_url(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'string' AND length(v #>> '{}') <= 2048
                 AND v #>> '{}' ~ '^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?([/?#][!-~]*)?$'
                THEN v #>> '{}' END
$$;
