-- sql/birdwatch/20_envelope.sql: what every service shares: the envelope it
-- writes, and the readers of event data that take nothing on trust.

/*
 * The helpers below run on every call and every event handled.  They are
 * PL/pgSQL rather than SQL: with its search_path pinned a SQL function is
 * not inlined, and it parses and plans its body again in every
 * transaction, where PL/pgSQL keeps its plans for the session.
 */

-- Now as RFC 3339 in UTC with microseconds, e.g. 2026-11-27T07:20:32.123456Z.
CREATE FUNCTION rfc3339_now() RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
END
$$;

CREATE FUNCTION envelope(id uuid, type text, version text, data jsonb, source text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN jsonb_build_object(
               'id', id,
               'type', type,
               'version', version,
               'data', data,
               'metadata', jsonb_build_object('source', source,
                                              'time', birdwatch.rfc3339_now()));
END
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
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN jsonb_typeof(v) = 'string'
                 AND v #>> '{}' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN (v #>> '{}')::uuid END;
END
$$;

-- A rating or score: an integer from 1 to 5.
CREATE FUNCTION as_grade(v jsonb) RETURNS integer
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN jsonb_typeof(v) = 'number' AND v::text IN ('1', '2', '3', '4', '5')
                THEN v::text::integer END;
END
$$;

-- An image URL as TickAPI accepts them (check_image_url), or NULL.
CREATE FUNCTION as_image_url(v jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN jsonb_typeof(v) = 'string' AND length(v #>> '{}') <= 2048
                 AND v #>> '{}' ~ '^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?([/?#][!-~]*)?$'
                THEN v #>> '{}' END;
END
$$;
