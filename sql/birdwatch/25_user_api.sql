-- sql/birdwatch/25_user_api.sql: UserAPI, the only holder of personal data:
-- watchers, their tokens, registration, and the lookups other services
-- make through it.  Erasure and the right of access are in 55_gdpr.sql.

CREATE TABLE users (
    id           uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    -- NULL for a watcher known only by a token (see resolve_token)
    email        text CHECK (pg_catalog.length(email) <= 254),
    display_name text CHECK (pg_catalog.length(display_name) BETWEEN 1 AND 100),
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE UNIQUE INDEX users_email ON users (pg_catalog.lower(email));
COMMENT ON TABLE users IS 'UserAPI: watchers and their personal data';

-- Tokens are kept as SHA-256 hashes only: they are 244 random bits, so a
-- plain hash is as good as a slow one and lets login find them by index.
CREATE TABLE tokens (
    hash       bytea PRIMARY KEY CHECK (pg_catalog.length(hash) = 32),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX tokens_user ON tokens (user_id);
COMMENT ON TABLE tokens IS 'UserAPI: SHA-256 of every token, and whose it is';

-- PL/pgSQL, as the helpers of 20_envelope.sql, to keep its plan: it runs
-- on every call.
CREATE FUNCTION token_hash(token text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN sha256(convert_to(token, 'UTF8'));
END
$$;

CREATE FUNCTION check_email(email text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF email IS NULL THEN
        RAISE EXCEPTION 'email must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "email" is NULL.';
    END IF;
    IF length(email) > 254 THEN
        RAISE EXCEPTION 'email address too long'
            USING ERRCODE = 'string_data_right_truncation',
                  DETAIL = format('Argument "email" has %s characters; at most 254 are allowed.', length(email));
    END IF;
    -- The addresses a mail system accepts in practice: a dot-atom local part
    -- of at most 64 characters, and a domain of labels with at least one dot.
    IF email !~ '^[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$'
       OR length(split_part(email, '@', 1)) > 64 THEN
        RAISE EXCEPTION 'invalid email address'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "email" (%s) is not an address of the form local@domain.example.', email);
    END IF;
END
$$;

CREATE FUNCTION check_display_name(display_name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF display_name IS NULL THEN
        RAISE EXCEPTION 'display name must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "display_name" is NULL.';
    END IF;
    -- Control characters, and the invisible or direction-changing ones
    -- (zero-width, bidi overrides and isolates, line separators).
    IF btrim(display_name) = '' OR length(display_name) > 100 OR display_name ~ '[[:cntrl:]]'
       OR display_name ~ '[\u200B-\u200F\u2028-\u202E\u2060-\u2069\uFEFF]' THEN
        RAISE EXCEPTION 'invalid display name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Argument "display_name" must have 1 to 100 characters, not all blank, without control, invisible or direction-changing characters.';
    END IF;
END
$$;

CREATE FUNCTION register_user(email text, display_name text)
RETURNS TABLE (user_id uuid, token text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_token text := 'bw_' || replace(gen_random_uuid()::text, '-', '')
                            || replace(gen_random_uuid()::text, '-', '');
    new_id    uuid;
BEGIN
    PERFORM birdwatch.check_email(email);
    PERFORM birdwatch.check_display_name(display_name);
    INSERT INTO birdwatch.users (email, display_name)
    VALUES (register_user.email, register_user.display_name)
    RETURNING id INTO new_id;
    INSERT INTO birdwatch.tokens (hash, user_id)
    VALUES (birdwatch.token_hash(new_token), new_id);
    RETURN QUERY SELECT new_id, new_token;
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'email address already registered'
            USING ERRCODE = 'unique_violation',
                  DETAIL = 'Argument "email" matches a registered address (compared without case).';
END
$$;
COMMENT ON FUNCTION register_user(text, text) IS
    'UserAPI: register a watcher; returns the user id and the token (shown once, stored only as a hash)';

/*
 * The user a token stands for.  AuthAPI is deliberately naive
 * (docs/events.md): it accepts any non-empty token.  A token nobody
 * registered therefore gets a watcher of its own, without email or display
 * name, created on its first use; every later use resolves to that same
 * watcher, until it is forgotten (a forgotten token starts afresh, as a new
 * watcher).  A NULL or empty token is refused as login refuses it (28000
 * authentication failed).
 */
CREATE FUNCTION resolve_token(token text) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h   bytea := birdwatch.token_hash(token);
    uid uuid;
BEGIN
    IF token IS NULL OR token = '' THEN
        RAISE EXCEPTION 'authentication failed'
            USING ERRCODE = 'invalid_authorization_specification',
                  DETAIL = format('Argument "token" is %s.', CASE WHEN token IS NULL THEN 'NULL' ELSE 'empty' END);
    END IF;
    SELECT t.user_id INTO uid FROM birdwatch.tokens t WHERE t.hash = h;
    IF FOUND THEN
        RETURN uid;
    END IF;
    INSERT INTO birdwatch.users DEFAULT VALUES RETURNING id INTO uid;
    INSERT INTO birdwatch.tokens (hash, user_id) VALUES (h, uid)
        ON CONFLICT (hash) DO NOTHING;
    IF NOT FOUND THEN
        -- A concurrent first use of the same token won.
        DELETE FROM birdwatch.users WHERE id = uid;
        SELECT t.user_id INTO uid FROM birdwatch.tokens t WHERE t.hash = h;
    END IF;
    RETURN uid;
END
$$;

-- Whether the user exists, and their address (NULL when they have none).
-- PL/pgSQL, to keep its plan: the Notifier calls it for every rating.
CREATE FUNCTION email_address(user_id uuid, OUT known boolean, OUT email text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT count(*) > 0, min(u.email) INTO known, email
      FROM birdwatch.users u WHERE u.id = email_address.user_id;
END
$$;
COMMENT ON FUNCTION email_address(uuid) IS
    'UserAPI, for the Notifier: whether a user exists and their email address';

CREATE FUNCTION list_users(max integer DEFAULT 100, skip integer DEFAULT 0)
RETURNS TABLE (user_id uuid, email text, display_name text, created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF max IS NULL OR max NOT BETWEEN 1 AND 10000 OR skip IS NULL OR skip < 0 THEN
        RAISE EXCEPTION 'invalid page'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "max" (%s) must be between 1 and 10000 and "skip" (%s) 0 or more.',
                                  coalesce(max::text, 'NULL'), coalesce(skip::text, 'NULL'));
    END IF;
    RETURN QUERY
        SELECT u.id, u.email, u.display_name, u.created_at
          FROM birdwatch.users u
         ORDER BY u.created_at, u.id
         LIMIT max OFFSET skip;
END
$$;
COMMENT ON FUNCTION list_users(integer, integer) IS
    'UserAPI, for AdminAPI: a page of watchers, oldest first';

CREATE FUNCTION user_count() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT count(*) FROM birdwatch.users $$;

ALTER FUNCTION register_user(text, text) OWNER TO birdwatch_user_api;
ALTER FUNCTION resolve_token(text) OWNER TO birdwatch_user_api;
ALTER FUNCTION email_address(uuid) OWNER TO birdwatch_user_api;
ALTER FUNCTION list_users(integer, integer) OWNER TO birdwatch_user_api;
ALTER FUNCTION user_count() OWNER TO birdwatch_user_api;

-- pg_dump: the data of these tables belongs in a dump (one call per
-- statement: each call rewrites the extension's catalog row).
SELECT pg_catalog.pg_extension_config_dump('users', '');
SELECT pg_catalog.pg_extension_config_dump('tokens', '');
