-- birdwatch 1.5 -> 1.6

-- The helpers that run on every call and every event handled are
-- PL/pgSQL instead of SQL (sql/birdwatch/20_envelope.sql,
-- 25_user_api.sql, 40_score_model.sql): with its search_path pinned a SQL
-- function is not inlined, and parses and plans its body again in every
-- transaction; PL/pgSQL keeps its plans for the session.  Same arguments,
-- results, volatility, owners and grants.

CREATE OR REPLACE FUNCTION rfc3339_now() RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
END
$$;

CREATE OR REPLACE FUNCTION envelope(id uuid, type text, version text, data jsonb, source text)
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

CREATE OR REPLACE FUNCTION as_uuid(v jsonb) RETURNS uuid
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN jsonb_typeof(v) = 'string'
                 AND v #>> '{}' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN (v #>> '{}')::uuid END;
END
$$;

CREATE OR REPLACE FUNCTION as_grade(v jsonb) RETURNS integer
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN jsonb_typeof(v) = 'number' AND v::text IN ('1', '2', '3', '4', '5')
                THEN v::text::integer END;
END
$$;

CREATE OR REPLACE FUNCTION as_image_url(v jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN jsonb_typeof(v) = 'string' AND length(v #>> '{}') <= 2048
                 AND v #>> '{}' ~ '^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?([/?#][!-~]*)?$'
                THEN v #>> '{}' END;
END
$$;

CREATE OR REPLACE FUNCTION token_hash(token text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN sha256(convert_to(token, 'UTF8'));
END
$$;

CREATE OR REPLACE FUNCTION email_address(user_id uuid, OUT known boolean, OUT email text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT count(*) > 0, min(u.email) INTO known, email
      FROM birdwatch.users u WHERE u.id = email_address.user_id;
END
$$;

CREATE OR REPLACE FUNCTION score_image(image_url text) RETURNS integer
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    score integer;
BEGIN
    SELECT 1 + (('x' || substr(encode(sha256(convert_to(s.secret || E'\n' || image_url, 'UTF8')), 'hex'), 1, 15))::bit(60)::bigint % 5)::integer
      INTO score
      FROM birdwatch.score_secret s;
    RETURN score;
END
$$;
