-- sql/birdwatch/30_auth_api.sql: AuthAPI: login, which resolves a token
-- through UserAPI and appends user/login, and the login sessions that spare
-- TickAPI's calls a login event each.

/*
 * A watcher's login session: when their last user/login event was
 * appended.  An explicit login always appends one and starts a new
 * session; a TickAPI call appends one only when the session is older than
 * the window (the setting birdwatch.login_window, default 30min) or began
 * on an earlier UTC day, so that every day a watcher is active has a login
 * of theirs (Statistics' distinct logins per day).  A user id and a time:
 * the row goes with the user (ON DELETE CASCADE) when they are forgotten.
 */
CREATE TABLE login_sessions (
    user_id    uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    started_at timestamptz NOT NULL
);
COMMENT ON TABLE login_sessions IS 'AuthAPI: when each watcher''s current login session began (their last user/login event)';

/*
 * The user a non-empty token stands for.  Appends user/login when
 * every_call is true (login) or when the watcher's session window is over
 * (TickAPI's calls); a concurrent call of the same watcher waits for the
 * first to commit and appends nothing.
 */
CREATE FUNCTION authenticate(token text, user_agent text, every_call boolean) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    uid    uuid;
    data   jsonb;
    session_window interval;
BEGIN
    IF token IS NULL OR token = '' THEN
        RAISE EXCEPTION 'authentication failed'
            USING ERRCODE = 'invalid_authorization_specification',
                  DETAIL = format('Argument "token" is %s.', CASE WHEN token IS NULL THEN 'NULL' ELSE 'empty' END);
    END IF;
    IF octet_length(token) > 1024 THEN
        RAISE EXCEPTION 'token too long'
            USING ERRCODE = 'string_data_right_truncation',
                  DETAIL = format('Argument "token" has %s bytes; at most 1024 are allowed.', octet_length(token));
    END IF;
    IF length(user_agent) > 512 THEN
        RAISE EXCEPTION 'user agent too long'
            USING ERRCODE = 'string_data_right_truncation',
                  DETAIL = format('Argument "user_agent" has %s characters; at most 512 are allowed.', length(user_agent));
    END IF;
    uid := birdwatch.resolve_token(token);
    session_window := coalesce(nullif(current_setting('birdwatch.login_window', true), ''), '30min')::interval;
    -- Within the session: a read, no lock, no event.
    IF NOT every_call THEN
        PERFORM FROM birdwatch.login_sessions s
         WHERE s.user_id = uid
           AND s.started_at > now() - session_window
           AND (s.started_at AT TIME ZONE 'UTC')::date = (now() AT TIME ZONE 'UTC')::date;
        IF FOUND THEN
            RETURN uid;
        END IF;
    END IF;
    -- A new session.  A concurrent call that started it first leaves the
    -- row within the window: the WHERE is read again after the wait, and
    -- this call appends nothing.
    INSERT INTO birdwatch.login_sessions AS s (user_id, started_at) VALUES (uid, now())
    ON CONFLICT (user_id) DO UPDATE SET started_at = greatest(s.started_at, excluded.started_at)
     WHERE every_call
        OR s.started_at <= excluded.started_at - session_window
        OR (s.started_at AT TIME ZONE 'UTC')::date <> (excluded.started_at AT TIME ZONE 'UTC')::date;
    IF NOT FOUND THEN
        RETURN uid;
    END IF;
    -- The client's user agent is personal data: version 1.1 adds it as an
    -- optional member, which eventstore stores encrypted under the user's
    -- key (protect_fields) and forgetting the user shreds.
    data := jsonb_build_object('user', jsonb_build_object('id', uid));
    IF user_agent IS NOT NULL THEN
        data := data || jsonb_build_object('client', jsonb_build_object('user_agent', user_agent));
    END IF;
    -- A stream per user, so that forgetting them removes their logins at
    -- once (eventstore.erase_stream) rather than after the topic's 30 days.
    PERFORM eventstore.append('user',
        birdwatch.envelope(gen_random_uuid(), 'login',
                           CASE WHEN user_agent IS NULL THEN '1.0' ELSE '1.1' END,
                           data, 'services/AuthAPI'),
        stream => uid::text);
    RETURN uid;
END
$$;
COMMENT ON FUNCTION authenticate(text, text, boolean) IS
    'AuthAPI, for login and TickAPI: the user a non-empty token stands for; appends user/login on every call, or once per login session';

CREATE FUNCTION login(token text, user_agent text DEFAULT NULL) RETURNS uuid
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT birdwatch.authenticate(token, user_agent, true) $$;
COMMENT ON FUNCTION login(text, text) IS
    'AuthAPI: the user a non-empty token stands for (a new watcher for an unknown token); appends user/login and starts a login session';

ALTER FUNCTION authenticate(text, text, boolean) OWNER TO birdwatch_auth_api;
ALTER FUNCTION login(text, text) OWNER TO birdwatch_auth_api;

-- pg_dump: the data of this table belongs in a dump.
SELECT pg_catalog.pg_extension_config_dump('login_sessions', '');
