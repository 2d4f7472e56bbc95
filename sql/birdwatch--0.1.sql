/* birdwatch--0.1.sql: the bird-watching system of EVENTS.md on eventstore. */

\echo Use "CREATE EXTENSION birdwatch" to load this file. \quit

/*
 * Every service of EVENTS.md is a role, and each service's functions are
 * owned by its role: a SECURITY DEFINER function then acts with exactly the
 * privileges of its service, never with those of the extension's owner.
 *
 *   birdwatch_app           the client: register_user, login, tick, rate, forget_me
 *   birdwatch_tick_api      appends tick, rate, gdpr; keeps the ticks store
 *   birdwatch_auth_api      appends user (login); resolves tokens through UserAPI
 *   birdwatch_user_api      the only holder of personal data; consumes gdpr
 *   birdwatch_score_model   consumes tick, appends score; reads its secret
 *   birdwatch_notifier      consumes rate, appends notification; the outbox
 *   birdwatch_statistics    consumes every topic; aggregates, no personal data
 *   birdwatch_admin_api     overview, user management (for the people who run it)
 *   birdwatch_audit         owns the AdminAPI calls that change something:
 *                           appends audit, asks for erasure, sets the score
 *                           secret; granted to nobody, so that every such
 *                           change goes through a call that records it
 *   birdwatch_export        reads the events about one person, for the
 *                           right of access; granted to nobody
 *
 * Tables are owned by the extension's owner and granted table by table.
 * Nothing is granted to PUBLIC.
 */

DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['birdwatch_app', 'birdwatch_tick_api', 'birdwatch_auth_api',
                             'birdwatch_user_api', 'birdwatch_score_model',
                             'birdwatch_notifier', 'birdwatch_statistics',
                             'birdwatch_admin_api', 'birdwatch_audit', 'birdwatch_export']
    LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;

------------------------------------------------------------------------------
-- Topics of EVENTS.md, and who may append to and consume each
------------------------------------------------------------------------------

-- Topics hold events, which outlive the extension: a re-created extension
-- finds them in place.
DO $topics$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES ('tick', '1.0', NULL::interval),
                                   ('rate', '2.0', NULL),
                                   ('score', '1.0', NULL),
                                   ('notification', '1.0', NULL),
                                   ('gdpr', '1.0', NULL),
                                   ('user', '1.0', interval '30 days'),
                                   ('audit', '1.0', NULL)) AS v(name, version, retention)
    LOOP
        IF NOT EXISTS (SELECT FROM eventstore.topics WHERE name = t.name) THEN
            PERFORM eventstore.create_topic(t.name, t.version, t.retention);
        END IF;
    END LOOP;
END
$topics$;

-- The optional personal fields of user events (the login's user agent)
-- are stored encrypted per user: crypto-shredding.
SELECT eventstore.protect_fields('user', 'user.id', ARRAY['client.user_agent'])
 WHERE NOT EXISTS (SELECT FROM eventstore.protections WHERE topic = 'user');

SELECT eventstore.grant_topic(topic, privilege, grantee::regrole)
  FROM (VALUES ('tick', 'append', 'birdwatch_tick_api'),
               ('rate', 'append', 'birdwatch_tick_api'),
               ('gdpr', 'append', 'birdwatch_tick_api'),
               ('user', 'append', 'birdwatch_auth_api'),
               ('score', 'append', 'birdwatch_score_model'),
               ('notification', 'append', 'birdwatch_notifier'),
               ('audit', 'append', 'birdwatch_audit'),
               ('tick', 'read', 'birdwatch_score_model'),
               ('rate', 'read', 'birdwatch_notifier'),
               ('gdpr', 'read', 'birdwatch_user_api'),
               ('user', 'erase', 'birdwatch_user_api'),
               ('tick', 'read', 'birdwatch_statistics'),
               ('rate', 'read', 'birdwatch_statistics'),
               ('score', 'read', 'birdwatch_statistics'),
               ('notification', 'read', 'birdwatch_statistics'),
               ('gdpr', 'read', 'birdwatch_statistics'),
               ('user', 'read', 'birdwatch_statistics'),
               ('audit', 'read', 'birdwatch_statistics')) AS g(topic, privilege, grantee);

------------------------------------------------------------------------------
-- Shared: the envelope every service writes
------------------------------------------------------------------------------

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
    'an EVENTS.md envelope with metadata.source and metadata.time (now, RFC 3339)';

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

------------------------------------------------------------------------------
-- UserAPI: the only holder of personal data
------------------------------------------------------------------------------

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

CREATE FUNCTION token_hash(token text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$ SELECT sha256(convert_to(token, 'UTF8')) $$;

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
 * The user a token stands for.  AuthAPI is deliberately naive (EVENTS.md):
 * it accepts any non-empty token.  A token nobody registered therefore
 * gets a watcher of its own, without email or display name, created on its
 * first use; every later use resolves to that same watcher, until it is
 * forgotten (a forgotten token starts afresh, as a new watcher).
 */
CREATE FUNCTION resolve_token(token text) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h   bytea := birdwatch.token_hash(token);
    uid uuid;
BEGIN
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
CREATE FUNCTION email_address(user_id uuid, OUT known boolean, OUT email text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) > 0, min(u.email) FROM birdwatch.users u WHERE u.id = email_address.user_id
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

-- The gdpr consumer: the person's data and tokens go, and so does every
-- email not yet sent to them, recorded as skipped (the notifier then knows
-- the rating as handled, should it see it again).
CREATE FUNCTION forget_user(e eventstore.event) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    uid uuid := birdwatch.as_uuid(e.envelope #> '{data,user,id}');
BEGIN
    IF uid IS NULL THEN
        RETURN;                                       -- names nobody
    END IF;
    DELETE FROM birdwatch.users WHERE id = uid;      -- tokens cascade
    -- Their logins, at once, not after the topic's retention; and the key of
    -- their personal fields, wherever copies of those events may be.
    PERFORM eventstore.erase_stream('user', uid::text);
    PERFORM eventstore.forget_subject(uid::text);
    WITH unsent AS (
        DELETE FROM birdwatch.outbox o WHERE o.user_id = uid AND o.sent_at IS NULL
        RETURNING o.source_event
    )
    INSERT INTO birdwatch.notification_skips (source_event, reason)
    SELECT source_event, 'unknown user' FROM unsent
    ON CONFLICT DO NOTHING;
END
$$;

-- The events that concern a person, in their topic's current version:
-- their ticks, the ratings they gave and got, the scores of their images,
-- the notifications to them.  Owned by birdwatch_export, the one role
-- that may read events (an eventstore_reader, granted to nobody), and
-- granted to UserAPI alone, for the right of access.
CREATE FUNCTION user_events(user_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t       text;
    after   bigint;
    e       eventstore.event;
    n       integer;
    uid     text := user_id::text;
    urls    text[] := '{}';
    found   jsonb := jsonb_build_object('ticks', '[]'::jsonb, 'ratings_given', '[]'::jsonb,
                                        'ratings_received', '[]'::jsonb,
                                        'scores_of_their_images', '[]'::jsonb,
                                        'notifications', '[]'::jsonb);
    kind    text;
BEGIN
    -- Topic by topic, page by page; score after tick, which names the images.
    FOREACH t IN ARRAY ARRAY['tick', 'rate', 'score', 'notification'] LOOP
        after := 0;
        LOOP
            n := 0;
            FOR e IN SELECT (eventstore.upcast(r)).* FROM eventstore.read(t, after, 10000) r LOOP
                n := n + 1;
                after := e.position;
                kind := CASE
                    WHEN t = 'tick' AND e.envelope #>> '{data,user,id}' = uid THEN 'ticks'
                    WHEN t = 'rate' AND e.envelope #>> '{data,user,id}' = uid THEN 'ratings_given'
                    WHEN t = 'rate' AND e.envelope #>> '{data,image,owner}' = uid THEN 'ratings_received'
                    WHEN t = 'score' AND e.envelope #>> '{data,image,url}' = ANY (urls) THEN 'scores_of_their_images'
                    WHEN t = 'notification' AND e.envelope #>> '{data,user,id}' = uid THEN 'notifications'
                END;
                IF kind = 'ticks' THEN
                    urls := urls || (e.envelope #>> '{data,image,url}');
                END IF;
                IF kind IS NOT NULL THEN
                    found := jsonb_set(found, ARRAY[kind], (found->kind) || jsonb_build_array(e.envelope));
                END IF;
            END LOOP;
            EXIT WHEN n < 10000;
        END LOOP;
    END LOOP;
    RETURN found;
END
$$;

-- Right of access: everything held about a person.
CREATE FUNCTION export_user_data(user_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    profile jsonb;
BEGIN
    IF user_id IS NULL THEN
        RAISE EXCEPTION 'user id must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "user_id" is NULL.';
    END IF;
    SELECT jsonb_build_object('id', u.id, 'email', u.email, 'display_name', u.display_name,
                              'created_at', u.created_at)
      INTO profile FROM birdwatch.users u WHERE u.id = export_user_data.user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user % does not exist', user_id
            USING ERRCODE = 'undefined_object',
                  DETAIL = 'Argument "user_id" names no registered watcher (or one already forgotten).';
    END IF;
    RETURN jsonb_build_object('user', profile)
           || birdwatch.user_events(user_id)
           || jsonb_build_object('emails_pending',
                                 (SELECT count(*) FROM birdwatch.outbox o
                                   WHERE o.user_id = export_user_data.user_id AND o.sent_at IS NULL));
END
$$;
COMMENT ON FUNCTION export_user_data(uuid) IS
    'UserAPI, for AdminAPI and UserAPI: everything held about a person (right of access)';

------------------------------------------------------------------------------
-- AuthAPI
------------------------------------------------------------------------------

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

------------------------------------------------------------------------------
-- TickAPI
------------------------------------------------------------------------------

CREATE TABLE ticks (
    image_url text COLLATE "C" PRIMARY KEY,
    owner     uuid NOT NULL,
    event_id  uuid NOT NULL,
    ticked_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX ticks_owner ON ticks (owner);
COMMENT ON TABLE ticks IS 'TickAPI: every ticked image and the watcher who ticked it';

-- An absolute http or https URL without credentials, spaces or control
-- characters, of at most 2048 characters.
CREATE FUNCTION check_image_url(image_url text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF image_url IS NULL THEN
        RAISE EXCEPTION 'image url must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "image_url" is NULL.';
    END IF;
    IF length(image_url) > 2048 THEN
        RAISE EXCEPTION 'image url too long'
            USING ERRCODE = 'string_data_right_truncation',
                  DETAIL = format('Argument "image_url" has %s characters; at most 2048 are allowed.', length(image_url));
    END IF;
    IF image_url !~ '^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?([/?#][!-~]*)?$' THEN
        RAISE EXCEPTION 'invalid image url'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "image_url" (%s) must be an absolute http or https URL with a host name, without credentials or spaces.',
                                  left(image_url, 200));
    END IF;
END
$$;

CREATE FUNCTION tick(token text, image_url text) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    uid      uuid := birdwatch.login(token);
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
    PERFORM eventstore.append('tick',
        birdwatch.envelope(new_id, 'new', '1.0',
                           jsonb_build_object('user', jsonb_build_object('id', uid),
                                              'image', jsonb_build_object('url', image_url)),
                           'services/TickAPI'));
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION tick(text, text) IS
    'TickAPI: report a bird with the URL of its image; returns the tick event id';

CREATE FUNCTION rate(token text, image_url text, rating integer) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    uid      uuid := birdwatch.login(token);
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
    PERFORM eventstore.append('rate',
        birdwatch.envelope(event_id, 'update', '2.0',
                           jsonb_build_object('user', jsonb_build_object('id', uid),
                                              'image', jsonb_build_object('url', image_url, 'owner', owner),
                                              'rating', rating),
                           'services/TickAPI'));
    RETURN event_id;
END
$$;
COMMENT ON FUNCTION rate(text, text, integer) IS
    'TickAPI: rate a ticked image 1..5; returns the rate event id';

CREATE FUNCTION request_erasure(user_id uuid) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    event_id uuid := gen_random_uuid();
BEGIN
    IF user_id IS NULL THEN
        RAISE EXCEPTION 'user id must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "user_id" is NULL.';
    END IF;
    PERFORM eventstore.append('gdpr',
        birdwatch.envelope(event_id, 'delete', '1.0',
                           jsonb_build_object('user', jsonb_build_object('id', user_id)),
                           'services/TickAPI'));
    RETURN event_id;
END
$$;
COMMENT ON FUNCTION request_erasure(uuid) IS
    'TickAPI, for forget_me and AdminAPI: append gdpr/delete for a user';

CREATE FUNCTION forget_me(token text) RETURNS uuid
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT birdwatch.request_erasure(birdwatch.login(token)) $$;
COMMENT ON FUNCTION forget_me(text) IS
    'TickAPI: ask for the deletion of your personal data; returns the gdpr event id';

/*
 * rate 1.0 -> 2.0 (EVENTS.md): 1.0 named the image by "image_url" and not
 * its owner, who is the watcher that ticked it.  Stored events are never
 * rewritten: eventstore runs this on the way to consumers and readers.
 */
CREATE FUNCTION upcast_rate_1_to_2(envelope jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    url   text := envelope #>> '{data,image_url}';
    owner uuid;
BEGIN
    SELECT k.owner INTO owner FROM birdwatch.ticks k WHERE k.image_url = url;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cannot upcast rate event % to 2.0', envelope->>'id'
            USING ERRCODE = 'no_data_found',
                  DETAIL = format('Its data.image_url (%s) names no ticked image, so it has no owner.', left(url, 200));
    END IF;
    RETURN jsonb_set(jsonb_set(envelope, '{version}', '"2.0"'),
                     '{data}',
                     (envelope->'data') - 'image_url'
                     || jsonb_build_object('image', jsonb_build_object('url', url, 'owner', owner)));
END
$$;

------------------------------------------------------------------------------
-- ScoreModel
------------------------------------------------------------------------------

-- The secret is configuration, readable by the score model alone.  It is
-- random at installation; AdminAPI replaces it with set_score_secret().
CREATE TABLE score_secret (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    secret     text NOT NULL CHECK (pg_catalog.length(secret) >= 16),
    changed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO score_secret (secret)
VALUES (pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '')
        || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', ''));
COMMENT ON TABLE score_secret IS 'ScoreModel: the secret of the score formula';

-- 1..5 from SHA-256 of the secret and the image URL.
CREATE FUNCTION score_image(image_url text) RETURNS integer
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 1 + (('x' || substr(encode(sha256(convert_to(s.secret || E'\n' || image_url, 'UTF8')), 'hex'), 1, 15))::bit(60)::bigint % 5)::integer
      FROM birdwatch.score_secret s
$$;

-- The ticks scored: a tick seen again is not scored again, even after the
-- secret changed (its score event stands; stored events never change).
CREATE TABLE scored_ticks (
    tick_id uuid PRIMARY KEY
);
COMMENT ON TABLE scored_ticks IS 'ScoreModel: the tick events it has scored';

-- The score event's time is its tick's recording time, so that its
-- content, like its id, follows from the tick alone.
CREATE FUNCTION score_tick(e eventstore.event) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    url text := birdwatch.as_image_url(e.envelope #> '{data,image,url}');
BEGIN
    IF url IS NULL THEN
        RETURN;                                       -- no image to score
    END IF;
    INSERT INTO birdwatch.scored_ticks VALUES (e.id) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM eventstore.append('score',
        jsonb_build_object(
            'id', eventstore.derived_id(e.id, 'birdwatch_score_model'),
            'type', 'update',
            'version', '1.0',
            'data', jsonb_build_object('image', jsonb_build_object('url', url),
                                       'score', birdwatch.score_image(url)),
            'metadata', jsonb_build_object(
                'source', 'services/ScoreModel',
                'time', to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))));
END
$$;

------------------------------------------------------------------------------
-- Notifier and its outbox
------------------------------------------------------------------------------

/*
 * One row per email to send.  The row is written in the transaction that
 * consumes the rate event, keyed by a notification id derived from it, so a
 * redelivered event writes nothing new.  eventstore-worker claims due rows
 * (claim_emails), sends them over SMTP with the notification id as
 * Message-ID, and reports each with email_sent or email_failed; a failed
 * row is retried with backoff and is never dropped.  The address is looked
 * up when the row is claimed: personal data stays in UserAPI's tables.
 */
CREATE TABLE outbox (
    id           uuid PRIMARY KEY,          -- the notification id
    user_id      uuid NOT NULL,             -- the recipient: the image's owner
    source_event uuid NOT NULL,             -- the rate event
    image_url    text NOT NULL,
    rating       integer NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    retry_at     timestamptz,
    leased_until timestamptz,
    sent_at      timestamptz
);
CREATE INDEX outbox_unsent ON outbox (created_at) WHERE sent_at IS NULL;
CREATE INDEX outbox_user ON outbox (user_id);
COMMENT ON TABLE outbox IS 'Notifier: emails to send, sent ones kept as the record';

CREATE TABLE notification_skips (
    source_event uuid PRIMARY KEY,
    reason       text NOT NULL CHECK (reason IN ('own image', 'no address', 'unknown user', 'invalid event')),
    recorded_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE notification_skips IS 'Notifier: rate events that sent no email, and why';

CREATE FUNCTION notify_rating(e eventstore.event) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner  uuid := birdwatch.as_uuid(e.envelope #> '{data,image,owner}');
    rater  uuid := birdwatch.as_uuid(e.envelope #> '{data,user,id}');
    url    text := birdwatch.as_image_url(e.envelope #> '{data,image,url}');
    rating integer := birdwatch.as_grade(e.envelope #> '{data,rating}');
    nid    uuid := eventstore.derived_id(e.id, 'birdwatch_notifier');
    addr   record;
    reason text;
BEGIN
    -- Seen before (a redelivery or a replay): decided then, once and for all.
    IF EXISTS (SELECT FROM birdwatch.outbox o WHERE o.id = nid)
       OR EXISTS (SELECT FROM birdwatch.notification_skips k WHERE k.source_event = e.id) THEN
        RETURN;
    END IF;
    addr := birdwatch.email_address(owner);
    reason := CASE WHEN owner IS NULL OR rater IS NULL OR url IS NULL OR rating IS NULL
                   THEN 'invalid event'
                   WHEN owner = rater THEN 'own image'
                   WHEN NOT addr.known THEN 'unknown user'
                   WHEN addr.email IS NULL THEN 'no address' END;
    IF reason IS NOT NULL THEN
        INSERT INTO birdwatch.notification_skips (source_event, reason)
        VALUES (e.id, reason) ON CONFLICT DO NOTHING;
        RETURN;
    END IF;
    INSERT INTO birdwatch.outbox (id, user_id, source_event, image_url, rating)
    VALUES (nid, owner, e.id, url, rating)
    ON CONFLICT (id) DO NOTHING;
    IF FOUND THEN
        PERFORM pg_notify('birdwatch_outbox', '');
    END IF;
END
$$;

-- First retry after birdwatch.email_retry_delay (default 1 s), doubling,
-- at most 1 hour apart.
CREATE FUNCTION email_retry_delay(attempts integer) RETURNS interval
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(coalesce(nullif(current_setting('birdwatch.email_retry_delay', true), ''), '1s')::interval
                 * power(2, least(greatest(attempts - 1, 0), 20)),
                 interval '1 hour')
$$;

CREATE FUNCTION claim_emails(max integer DEFAULT 10)
RETURNS TABLE (id uuid, recipient text, subject text, body text, attempt integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o    birdwatch.outbox;
    addr record;
BEGIN
    IF max IS NULL OR max NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'invalid claim limit'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "max" is %s; it must be between 1 and 1000.', coalesce(max::text, 'NULL'));
    END IF;
    FOR o IN
        SELECT * FROM birdwatch.outbox b
         WHERE b.sent_at IS NULL
           AND coalesce(b.retry_at, '-infinity') <= now()
           AND coalesce(b.leased_until, '-infinity') <= now()
         ORDER BY b.created_at
         LIMIT max
           FOR UPDATE SKIP LOCKED
    LOOP
        addr := birdwatch.email_address(o.user_id);
        IF addr.email IS NULL THEN
            -- The address went since the row was written: nothing to send.
            DELETE FROM birdwatch.outbox b WHERE b.id = o.id;
            INSERT INTO birdwatch.notification_skips (source_event, reason)
            VALUES (o.source_event, CASE WHEN addr.known THEN 'no address' ELSE 'unknown user' END)
            ON CONFLICT DO NOTHING;
            CONTINUE;
        END IF;
        UPDATE birdwatch.outbox b SET leased_until = now() + interval '5 minutes' WHERE b.id = o.id;
        id := o.id;
        recipient := addr.email;
        subject := format('Your bird was rated %s of 5', o.rating);
        body := format(E'Hello,\n\nA watcher rated your image %s: %s of 5.\n\nHappy birding!\n-- birdwatch\n',
                       o.image_url, o.rating);
        attempt := o.attempts + 1;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION claim_emails(integer) IS
    'Notifier, for eventstore-worker: lease up to max due emails for 5 minutes, with their address and text';

CREATE FUNCTION email_sent(id uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o birdwatch.outbox;
BEGIN
    -- The mark need not wait for the WAL flush: were it lost in a crash, the
    -- email would be sent again with the same Message-ID, and the event
    -- appended then.  This doubles the emails a daemon can report per second.
    PERFORM set_config('synchronous_commit', 'off', true);
    UPDATE birdwatch.outbox b SET sent_at = now(), leased_until = NULL, last_error = NULL
     WHERE b.id = email_sent.id AND b.sent_at IS NULL
    RETURNING * INTO o;
    IF NOT FOUND THEN
        RETURN;         -- already reported, or forgotten since (gdpr)
    END IF;
    PERFORM eventstore.append('notification',
        birdwatch.envelope(o.id, 'email', '1.0',
                           jsonb_build_object('user', jsonb_build_object('id', o.user_id),
                                              'message_type', 'rate.update',
                                              'source_event', jsonb_build_object('name', 'rate',
                                                                                 'id', o.source_event,
                                                                                 'type', 'update')),
                           'services/Notifier'));
END
$$;
COMMENT ON FUNCTION email_sent(uuid) IS
    'Notifier, for eventstore-worker: the email was accepted by the SMTP server; appends notification/email';

CREATE FUNCTION email_failed(id uuid, error text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE birdwatch.outbox b
       SET attempts = b.attempts + 1,
           last_error = left(coalesce(error, 'unknown error'), 1000),
           leased_until = NULL,
           retry_at = now() + birdwatch.email_retry_delay(b.attempts + 1)
     WHERE b.id = email_failed.id AND b.sent_at IS NULL;
END
$$;
COMMENT ON FUNCTION email_failed(uuid, text) IS
    'Notifier, for eventstore-worker: sending failed; the email is retried with backoff';

------------------------------------------------------------------------------
-- Statistics: aggregates for analysis, never personal data
------------------------------------------------------------------------------

-- Every event counted, so that a redelivered event counts once.
CREATE TABLE stats_seen (
    event_id uuid PRIMARY KEY
);
CREATE TABLE stats_daily (
    day    date NOT NULL,
    topic  text NOT NULL,
    events bigint NOT NULL,
    PRIMARY KEY (day, topic)
);
CREATE TABLE stats_ratings (
    rating  integer PRIMARY KEY CHECK (rating BETWEEN 1 AND 5),
    ratings bigint NOT NULL
);
CREATE TABLE stats_image_scores (
    image_url text COLLATE "C" PRIMARY KEY,
    score_sum bigint NOT NULL,
    scores    bigint NOT NULL
);
-- Per user: removed when the user is forgotten.
CREATE TABLE stats_user_ticks (
    user_id uuid PRIMARY KEY,
    ticks   bigint NOT NULL
);
CREATE TABLE stats_daily_logins (
    day   date PRIMARY KEY,
    users bigint NOT NULL
);
CREATE TABLE stats_login_seen (
    day     date NOT NULL,
    user_id uuid NOT NULL,
    PRIMARY KEY (day, user_id)
);
CREATE INDEX stats_login_seen_user ON stats_login_seen (user_id);
COMMENT ON TABLE stats_daily IS 'Statistics: events per day and topic';
COMMENT ON TABLE stats_user_ticks IS 'Statistics: ticks per user id; rows of forgotten users are removed';
COMMENT ON TABLE stats_login_seen IS 'Statistics: who logged in on which day, to count distinct logins; rows of forgotten users are removed';

CREATE FUNCTION count_event(e eventstore.event) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d      jsonb := e.envelope->'data';
    on_day date := (e.recorded_at AT TIME ZONE 'UTC')::date;
    uid    uuid := birdwatch.as_uuid(d #> '{user,id}');
    grade  integer;
    url    text;
BEGIN
    INSERT INTO birdwatch.stats_seen VALUES (e.id) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO birdwatch.stats_daily AS s VALUES (on_day, e.topic, 1)
        ON CONFLICT (day, topic) DO UPDATE SET events = s.events + 1;
    -- Counted above whatever its shape; below, only what it says in the
    -- shape EVENTS.md gives (see as_uuid).
    CASE e.topic
    WHEN 'tick' THEN
        IF uid IS NOT NULL THEN
            INSERT INTO birdwatch.stats_user_ticks AS s VALUES (uid, 1)
                ON CONFLICT (user_id) DO UPDATE SET ticks = s.ticks + 1;
        END IF;
    WHEN 'rate' THEN
        grade := birdwatch.as_grade(d->'rating');
        IF grade IS NOT NULL THEN
            INSERT INTO birdwatch.stats_ratings AS s VALUES (grade, 1)
                ON CONFLICT (rating) DO UPDATE SET ratings = s.ratings + 1;
        END IF;
    WHEN 'score' THEN
        grade := birdwatch.as_grade(d->'score');
        url := birdwatch.as_image_url(d #> '{image,url}');
        IF grade IS NOT NULL AND url IS NOT NULL THEN
            INSERT INTO birdwatch.stats_image_scores AS s VALUES (url, grade, 1)
                ON CONFLICT (image_url) DO UPDATE SET score_sum = s.score_sum + excluded.score_sum,
                                                      scores = s.scores + 1;
        END IF;
    WHEN 'user' THEN
        IF uid IS NOT NULL THEN
            INSERT INTO birdwatch.stats_login_seen VALUES (on_day, uid) ON CONFLICT DO NOTHING;
        END IF;
        IF uid IS NOT NULL AND FOUND THEN
            INSERT INTO birdwatch.stats_daily_logins AS s VALUES (on_day, 1)
                ON CONFLICT (day) DO UPDATE SET users = s.users + 1;
        END IF;
    WHEN 'gdpr' THEN
        DELETE FROM birdwatch.stats_user_ticks WHERE user_id = uid;
        DELETE FROM birdwatch.stats_login_seen WHERE user_id = uid;
    ELSE
        NULL;
    END CASE;
END
$$;

CREATE FUNCTION overview() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'events_by_topic', (SELECT coalesce(jsonb_object_agg(topic, n), '{}')
                              FROM (SELECT topic, sum(events) AS n FROM birdwatch.stats_daily
                                     GROUP BY topic) t),
        'ticks', (SELECT coalesce(sum(events), 0) FROM birdwatch.stats_daily WHERE topic = 'tick'),
        'ratings', (SELECT jsonb_object_agg(r, coalesce(s.ratings, 0) ORDER BY r)
                      FROM generate_series(1, 5) AS r
                      LEFT JOIN birdwatch.stats_ratings s ON s.rating = r),
        'average_rating', (SELECT round(sum(rating * ratings)::numeric / nullif(sum(ratings), 0), 2)
                             FROM birdwatch.stats_ratings),
        'images_scored', (SELECT count(*) FROM birdwatch.stats_image_scores),
        'average_score', (SELECT round(avg(score_sum::numeric / scores), 2)
                            FROM birdwatch.stats_image_scores),
        'watchers_with_ticks', (SELECT count(*) FROM birdwatch.stats_user_ticks),
        'emails_sent', (SELECT coalesce(sum(events), 0) FROM birdwatch.stats_daily
                         WHERE topic = 'notification'),
        'deletions', (SELECT coalesce(sum(events), 0) FROM birdwatch.stats_daily WHERE topic = 'gdpr'),
        'distinct_logins_today', (SELECT coalesce(max(users), 0) FROM birdwatch.stats_daily_logins
                                   WHERE day = (now() AT TIME ZONE 'UTC')::date))
$$;
COMMENT ON FUNCTION overview() IS
    'Statistics, for AdminAPI: totals, ratings histogram, average score, emails sent, deletions';

CREATE FUNCTION daily(from_day date, to_day date)
RETURNS TABLE (day date, ticks bigint, ratings bigint, scores bigint, emails_sent bigint,
               deletions bigint, logins bigint, distinct_logins bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF from_day IS NULL OR to_day IS NULL THEN
        RAISE EXCEPTION 'days must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = format('Argument "%s" is NULL.', CASE WHEN from_day IS NULL THEN 'from_day' ELSE 'to_day' END);
    END IF;
    IF to_day < from_day OR to_day - from_day > 3660 THEN
        RAISE EXCEPTION 'invalid day range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "to_day" (%s) must be on or after "from_day" (%s), at most 3660 days later.',
                                  to_day, from_day);
    END IF;
    RETURN QUERY
        SELECT g.day::date,
               coalesce(sum(s.events) FILTER (WHERE s.topic = 'tick'), 0)::bigint,
               coalesce(sum(s.events) FILTER (WHERE s.topic = 'rate'), 0)::bigint,
               coalesce(sum(s.events) FILTER (WHERE s.topic = 'score'), 0)::bigint,
               coalesce(sum(s.events) FILTER (WHERE s.topic = 'notification'), 0)::bigint,
               coalesce(sum(s.events) FILTER (WHERE s.topic = 'gdpr'), 0)::bigint,
               coalesce(sum(s.events) FILTER (WHERE s.topic = 'user'), 0)::bigint,
               coalesce((SELECT l.users FROM birdwatch.stats_daily_logins l WHERE l.day = g.day::date), 0)
          FROM generate_series(from_day, to_day, interval '1 day') AS g(day)
          LEFT JOIN birdwatch.stats_daily s ON s.day = g.day::date
         GROUP BY g.day
         ORDER BY g.day;
END
$$;
COMMENT ON FUNCTION daily(date, date) IS
    'Statistics, for AdminAPI: counts per day from from_day to to_day';

------------------------------------------------------------------------------
-- AdminAPI
--
-- Calls that change something run as birdwatch_audit, a role nobody is
-- granted: members of birdwatch_admin_api can neither append audit events
-- nor erase a user or set the secret without the call that records it.
-- The actor is the role the session acts as: the one SET ROLE chose (which
-- needs membership), else the login role; a SECURITY DEFINER call changes
-- neither.
------------------------------------------------------------------------------

CREATE FUNCTION audit(type text, action text, target jsonb) RETURNS uuid
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    event_id uuid := gen_random_uuid();
    actor    text := CASE current_setting('role') WHEN 'none' THEN session_user::text
                                                  ELSE current_setting('role') END;
BEGIN
    PERFORM eventstore.append('audit',
        birdwatch.envelope(event_id, type, '1.0',
                           jsonb_build_object('action', action,
                                              'actor', jsonb_build_object('role', actor,
                                                                          'session_user', session_user::text),
                                              'target', target),
                           'services/AdminAPI'));
    RETURN event_id;
END
$$;

CREATE FUNCTION admin_overview() RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'users', birdwatch.user_count(),
        'statistics', birdwatch.overview(),
        'consumers', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                 'name', c.name, 'lag_events', c.lag_events,
                                 'lag_seconds', c.lag_seconds, 'handled', c.handled,
                                 'parked', c.parked, 'last_error', c.last_error) ORDER BY c.name), '[]')
                        FROM eventstore.consumer_status c
                       WHERE c.name LIKE 'birdwatch\_%'))
$$;
COMMENT ON FUNCTION admin_overview() IS
    'AdminAPI: users, statistics and the lag of every birdwatch consumer';

CREATE FUNCTION delete_user(user_id uuid) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gdpr_id uuid;
BEGIN
    IF user_id IS NULL THEN
        RAISE EXCEPTION 'user id must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "user_id" is NULL.';
    END IF;
    IF NOT (birdwatch.email_address(user_id)).known THEN
        RAISE EXCEPTION 'user % does not exist', user_id
            USING ERRCODE = 'undefined_object',
                  DETAIL = 'Argument "user_id" names no registered watcher (or one already forgotten).';
    END IF;
    gdpr_id := birdwatch.request_erasure(user_id);
    PERFORM birdwatch.audit('delete', 'user.delete',
                            jsonb_build_object('user', jsonb_build_object('id', user_id),
                                               'gdpr_event', jsonb_build_object('id', gdpr_id)));
    RETURN gdpr_id;
END
$$;
COMMENT ON FUNCTION delete_user(uuid) IS
    'AdminAPI: forget a user as forget_me does, recorded as an audit event; returns the gdpr event id';

CREATE FUNCTION set_score_secret(secret text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF secret IS NULL OR length(secret) < 16 THEN
        RAISE EXCEPTION 'score secret too short'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Argument "secret" must have at least 16 characters.';
    END IF;
    -- Written, never read: birdwatch_audit may UPDATE the table, not SELECT it.
    UPDATE birdwatch.score_secret SET secret = set_score_secret.secret, changed_at = now();
    PERFORM birdwatch.audit('update', 'score_secret.set', '{}'::jsonb);
END
$$;
COMMENT ON FUNCTION set_score_secret(text) IS
    'AdminAPI: replace the ScoreModel''s secret (scores of later ticks change); recorded as an audit event';

------------------------------------------------------------------------------
-- Consumers
------------------------------------------------------------------------------

-- rate 1.0 events reach every consumer and reader as 2.0.  Upcasters are
-- eventstore's rows too: a re-created extension finds this one in place.
SELECT eventstore.create_upcaster('rate', 1, 2, 'birdwatch.upcast_rate_1_to_2(jsonb)')
 WHERE NOT EXISTS (SELECT FROM eventstore.upcasters WHERE topic = 'rate' AND from_major = 1);

-- Consumers are eventstore's rows, not the extension's objects: a
-- re-created extension takes over the ones it left.  New ones start after
-- the last stored event, except Statistics, which counts the history into
-- its new tables: events of an earlier installation were scored, mailed
-- and erased by it, and must not be again.
DO $consumers$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT * FROM (VALUES
            ('birdwatch_score_model', ARRAY['tick'], 'birdwatch.score_tick(eventstore.event)',
             'birdwatch_score_model'),
            ('birdwatch_notifier', ARRAY['rate'], 'birdwatch.notify_rating(eventstore.event)',
             'birdwatch_notifier'),
            ('birdwatch_statistics', ARRAY['tick', 'rate', 'score', 'notification', 'gdpr', 'user', 'audit'],
             'birdwatch.count_event(eventstore.event)', 'birdwatch_statistics'),
            ('birdwatch_user_gdpr', ARRAY['gdpr'], 'birdwatch.forget_user(eventstore.event)',
             'birdwatch_user_api'))
            AS v(name, topics, handler, run_as)
    LOOP
        IF NOT EXISTS (SELECT FROM eventstore.consumers WHERE name = c.name) THEN
            PERFORM eventstore.create_consumer(c.name, c.topics, c.handler::regprocedure,
                                               batch_size => 500, run_as => c.run_as::regrole);
            IF c.name <> 'birdwatch_statistics' THEN
                PERFORM eventstore.reset_consumer(c.name,
                                                  (SELECT coalesce(max(position), 0) FROM eventstore.events));
            END IF;
        END IF;
    END LOOP;
END
$consumers$;

------------------------------------------------------------------------------
-- Ownership: each service's functions belong to its role
------------------------------------------------------------------------------

ALTER FUNCTION register_user(text, text) OWNER TO birdwatch_user_api;
ALTER FUNCTION resolve_token(text) OWNER TO birdwatch_user_api;
ALTER FUNCTION email_address(uuid) OWNER TO birdwatch_user_api;
ALTER FUNCTION list_users(integer, integer) OWNER TO birdwatch_user_api;
ALTER FUNCTION user_count() OWNER TO birdwatch_user_api;
ALTER FUNCTION forget_user(eventstore.event) OWNER TO birdwatch_user_api;
ALTER FUNCTION export_user_data(uuid) OWNER TO birdwatch_user_api;
ALTER FUNCTION user_events(uuid) OWNER TO birdwatch_export;
ALTER FUNCTION login(text, text) OWNER TO birdwatch_auth_api;
ALTER FUNCTION tick(text, text) OWNER TO birdwatch_tick_api;
ALTER FUNCTION rate(text, text, integer) OWNER TO birdwatch_tick_api;
ALTER FUNCTION request_erasure(uuid) OWNER TO birdwatch_tick_api;
ALTER FUNCTION forget_me(text) OWNER TO birdwatch_tick_api;
ALTER FUNCTION upcast_rate_1_to_2(jsonb) OWNER TO birdwatch_tick_api;
ALTER FUNCTION score_image(text) OWNER TO birdwatch_score_model;
ALTER FUNCTION score_tick(eventstore.event) OWNER TO birdwatch_score_model;
ALTER FUNCTION notify_rating(eventstore.event) OWNER TO birdwatch_notifier;
ALTER FUNCTION claim_emails(integer) OWNER TO birdwatch_notifier;
ALTER FUNCTION email_sent(uuid) OWNER TO birdwatch_notifier;
ALTER FUNCTION email_failed(uuid, text) OWNER TO birdwatch_notifier;
ALTER FUNCTION count_event(eventstore.event) OWNER TO birdwatch_statistics;
ALTER FUNCTION overview() OWNER TO birdwatch_statistics;
ALTER FUNCTION daily(date, date) OWNER TO birdwatch_statistics;
ALTER FUNCTION admin_overview() OWNER TO birdwatch_admin_api;
ALTER FUNCTION audit(text, text, jsonb) OWNER TO birdwatch_audit;
ALTER FUNCTION delete_user(uuid) OWNER TO birdwatch_audit;
ALTER FUNCTION set_score_secret(text) OWNER TO birdwatch_audit;

------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC; each service exactly what it needs
------------------------------------------------------------------------------

REVOKE ALL ON SCHEMA birdwatch FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA birdwatch FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA birdwatch FROM PUBLIC;

GRANT USAGE ON SCHEMA birdwatch
    TO birdwatch_app, birdwatch_tick_api, birdwatch_auth_api, birdwatch_user_api,
       birdwatch_score_model, birdwatch_notifier, birdwatch_statistics, birdwatch_admin_api,
       birdwatch_audit;

-- Shared helpers, pure functions of their arguments.
GRANT EXECUTE ON FUNCTION rfc3339_now(), envelope(uuid, text, text, jsonb, text)
    TO birdwatch_tick_api, birdwatch_auth_api, birdwatch_score_model,
       birdwatch_notifier, birdwatch_audit;
GRANT EXECUTE ON FUNCTION token_hash(text), check_email(text), check_display_name(text)
    TO birdwatch_user_api;
GRANT EXECUTE ON FUNCTION check_image_url(text) TO birdwatch_tick_api;
GRANT EXECUTE ON FUNCTION as_uuid(jsonb), as_grade(jsonb), as_image_url(jsonb)
    TO birdwatch_user_api, birdwatch_score_model, birdwatch_notifier, birdwatch_statistics;

-- The client.
GRANT EXECUTE ON FUNCTION register_user(text, text), login(text, text),
                          tick(text, text), rate(text, text, integer), forget_me(text)
    TO birdwatch_app;

-- UserAPI: its tables; its functions for the services that talk to it.
GRANT SELECT, INSERT, UPDATE, DELETE ON users, tokens TO birdwatch_user_api;
GRANT DELETE ON outbox TO birdwatch_user_api;
GRANT SELECT (user_id, sent_at, source_event) ON outbox TO birdwatch_user_api;
GRANT INSERT ON notification_skips TO birdwatch_user_api;
GRANT EXECUTE ON FUNCTION resolve_token(text) TO birdwatch_auth_api;
GRANT EXECUTE ON FUNCTION email_address(uuid) TO birdwatch_notifier, birdwatch_audit;
GRANT EXECUTE ON FUNCTION list_users(integer, integer), user_count() TO birdwatch_admin_api;
GRANT EXECUTE ON FUNCTION export_user_data(uuid) TO birdwatch_admin_api;
GRANT EXECUTE ON FUNCTION eventstore.forget_subject(text) TO birdwatch_user_api;
-- export_user_data: the person's events, through birdwatch_export alone.
GRANT eventstore_reader TO birdwatch_export;
GRANT USAGE ON SCHEMA birdwatch TO birdwatch_export;
GRANT EXECUTE ON FUNCTION user_events(uuid) TO birdwatch_user_api;

-- AuthAPI: TickAPI authenticates every call through login.
GRANT EXECUTE ON FUNCTION login(text, text) TO birdwatch_tick_api;

-- TickAPI.
GRANT SELECT, INSERT ON ticks TO birdwatch_tick_api;
GRANT EXECUTE ON FUNCTION request_erasure(uuid) TO birdwatch_audit;

-- ScoreModel: the secret is its alone to read.
GRANT SELECT ON score_secret TO birdwatch_score_model;
GRANT SELECT, INSERT ON scored_ticks TO birdwatch_score_model;
GRANT UPDATE ON score_secret TO birdwatch_audit;

-- Notifier: its outbox; the daemon logs in as a member of birdwatch_notifier.
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox, notification_skips TO birdwatch_notifier;
GRANT EXECUTE ON FUNCTION email_retry_delay(integer) TO birdwatch_notifier;

-- Statistics: its tables; overview and daily for AdminAPI.
GRANT SELECT, INSERT, UPDATE, DELETE
    ON stats_seen, stats_daily, stats_ratings, stats_image_scores, stats_user_ticks,
       stats_daily_logins, stats_login_seen
    TO birdwatch_statistics;
GRANT EXECUTE ON FUNCTION overview(), daily(date, date) TO birdwatch_admin_api;

-- AdminAPI: its functions, and the consumers' status from eventstore.
GRANT EXECUTE ON FUNCTION admin_overview(), delete_user(uuid), set_score_secret(text)
    TO birdwatch_admin_api;
GRANT USAGE ON SCHEMA eventstore TO birdwatch_admin_api;
GRANT SELECT ON eventstore.consumer_status TO birdwatch_admin_api;
GRANT EXECUTE ON FUNCTION eventstore.undelivered(text) TO birdwatch_admin_api;

------------------------------------------------------------------------------
-- pg_dump: the data of these tables belongs in a dump
------------------------------------------------------------------------------

-- One call per statement: each call rewrites the extension's catalog row.
SELECT pg_catalog.pg_extension_config_dump('users', '');
SELECT pg_catalog.pg_extension_config_dump('tokens', '');
SELECT pg_catalog.pg_extension_config_dump('ticks', '');
SELECT pg_catalog.pg_extension_config_dump('score_secret', '');
SELECT pg_catalog.pg_extension_config_dump('scored_ticks', '');
SELECT pg_catalog.pg_extension_config_dump('outbox', '');
SELECT pg_catalog.pg_extension_config_dump('notification_skips', '');
SELECT pg_catalog.pg_extension_config_dump('stats_seen', '');
SELECT pg_catalog.pg_extension_config_dump('stats_daily', '');
SELECT pg_catalog.pg_extension_config_dump('stats_ratings', '');
SELECT pg_catalog.pg_extension_config_dump('stats_image_scores', '');
SELECT pg_catalog.pg_extension_config_dump('stats_user_ticks', '');
SELECT pg_catalog.pg_extension_config_dump('stats_daily_logins', '');
SELECT pg_catalog.pg_extension_config_dump('stats_login_seen', '');
