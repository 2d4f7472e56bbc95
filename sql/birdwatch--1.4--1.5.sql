-- birdwatch 1.4 -> 1.5

-- AuthAPI's login sessions: TickAPI's calls append user/login once per
-- watcher and session window instead of on every call
-- (sql/birdwatch/30_auth_api.sql, sql/birdwatch/35_tick_api.sql).
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

CREATE OR REPLACE FUNCTION login(token text, user_agent text DEFAULT NULL) RETURNS uuid
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT birdwatch.authenticate(token, user_agent, true) $$;
COMMENT ON FUNCTION login(text, text) IS
    'AuthAPI: the user a non-empty token stands for (a new watcher for an unknown token); appends user/login and starts a login session';

ALTER FUNCTION authenticate(text, text, boolean) OWNER TO birdwatch_auth_api;
ALTER FUNCTION login(text, text) OWNER TO birdwatch_auth_api;

-- pg_dump: the data of this table belongs in a dump.
SELECT pg_catalog.pg_extension_config_dump('login_sessions', '');

CREATE OR REPLACE FUNCTION tick(token text, image_url text) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    uid      uuid := birdwatch.authenticate(token, NULL, false);
    new_id   uuid := gen_random_uuid();
    t        birdwatch.ticks;
BEGIN
    PERFORM birdwatch.check_image_url(image_url);
    INSERT INTO birdwatch.ticks (image_url, owner, event_id)
    VALUES (tick.image_url, uid, new_id)
    ON CONFLICT ON CONSTRAINT ticks_pkey DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO t FROM birdwatch.ticks k WHERE k.image_url = tick.image_url;
        IF t.owner = uid THEN
            RETURN t.event_id;          -- the same watcher again: a retry
        END IF;
        RAISE EXCEPTION 'image already ticked'
            USING ERRCODE = 'unique_violation',
                  DETAIL = 'Argument "image_url" names an image another watcher ticked.';
    END IF;
    -- A tick starts a story (metadata.correlation_id, its own id): its
    -- score carries the same correlation id (eventstore fills it in).
    PERFORM eventstore.append('tick',
        jsonb_set(birdwatch.envelope(new_id, 'new', '1.0',
                                     jsonb_build_object('user', jsonb_build_object('id', uid),
                                                        'image', jsonb_build_object('url', image_url)),
                                     'services/TickAPI'),
                  '{metadata,correlation_id}', to_jsonb(new_id)));
    RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION rate(token text, image_url text, rating integer) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    uid      uuid := birdwatch.authenticate(token, NULL, false);
    event_id uuid := gen_random_uuid();
    owner    uuid;
BEGIN
    PERFORM birdwatch.check_image_url(image_url);
    IF rating IS NULL THEN
        RAISE EXCEPTION 'rating must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "rating" is NULL.';
    END IF;
    IF rating NOT BETWEEN 1 AND 5 THEN
        RAISE EXCEPTION 'rating out of range'
            USING ERRCODE = 'numeric_value_out_of_range',
                  DETAIL = format('Argument "rating" is %s; it must be between 1 and 5.', rating);
    END IF;
    SELECT k.owner INTO owner FROM birdwatch.ticks k WHERE k.image_url = rate.image_url;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'image not ticked'
            USING ERRCODE = 'no_data_found',
                  DETAIL = format('Argument "image_url" (%s) names no ticked image.', left(image_url, 200)),
                  HINT = 'Only ticked images can be rated.';
    END IF;
    -- A rating starts a story too: the notification of its email joins it.
    PERFORM eventstore.append('rate',
        jsonb_set(birdwatch.envelope(event_id, 'update', '2.0',
                                     jsonb_build_object('user', jsonb_build_object('id', uid),
                                                        'image', jsonb_build_object('url', image_url, 'owner', owner),
                                                        'rating', rating),
                                     'services/TickAPI'),
                  '{metadata,correlation_id}', to_jsonb(event_id)));
    RETURN event_id;
END
$$;

CREATE OR REPLACE FUNCTION forget_me(token text) RETURNS uuid
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT birdwatch.request_erasure(birdwatch.authenticate(token, NULL, false)) $$;

REVOKE ALL ON login_sessions FROM PUBLIC;
REVOKE ALL ON FUNCTION authenticate(text, text, boolean) FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON login_sessions TO birdwatch_auth_api;
GRANT EXECUTE ON FUNCTION authenticate(text, text, boolean) TO birdwatch_tick_api;
REVOKE EXECUTE ON FUNCTION login(text, text) FROM birdwatch_tick_api;
