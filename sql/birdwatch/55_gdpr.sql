-- sql/birdwatch/55_gdpr.sql: the rights of a person over their data, held
-- by UserAPI: erasure (the consumer of gdpr events, which TickAPI's
-- forget_me and AdminAPI's delete_user append) and access (everything held
-- about them, their events read through birdwatch_export).

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

ALTER FUNCTION forget_user(eventstore.event) OWNER TO birdwatch_user_api;
ALTER FUNCTION export_user_data(uuid) OWNER TO birdwatch_user_api;
ALTER FUNCTION user_events(uuid) OWNER TO birdwatch_export;
