-- sql/birdwatch/30_auth_api.sql: AuthAPI: login, which resolves a token
-- through UserAPI and appends user/login.

CREATE FUNCTION login(token text, user_agent text DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    uid  uuid;
    data jsonb;
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
    -- The client's user agent is personal data: version 1.1 adds it as an
    -- optional member, which eventstore stores encrypted under the user's
    -- key (protect_fields below) and forgetting the user shreds.
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
COMMENT ON FUNCTION login(text, text) IS
    'AuthAPI: the user a non-empty token stands for (a new watcher for an unknown token); appends user/login';

ALTER FUNCTION login(text, text) OWNER TO birdwatch_auth_api;
