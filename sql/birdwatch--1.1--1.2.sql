-- birdwatch 1.1 -> 1.2: what 1.2 changes in the SQL objects against 1.1.
--
-- A fresh CREATE EXTENSION birdwatch runs birdwatch--1.2.sql, which make builds
-- from the current source, sql/birdwatch/*.sql; an installation of 1.1 runs
-- this script instead, and test/shell/upgrade.sh checks that both end up
-- the same, object for object.  Once 1.2 is released this script is never
-- edited again: later changes go into birdwatch--1.2--<next>.sql.

\echo Use "ALTER EXTENSION birdwatch UPDATE TO '1.2'" to load this file. \quit

------------------------------------------------------------------------------
-- Stories: a tick and a rating start one (metadata.correlation_id, their own
-- id); the score of a tick and the notification of a rating's email join
-- it (eventstore 1.2 fills in causation_id and correlation_id), so that
-- eventstore.read_correlated() returns them together.
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION tick(token text, image_url text) RETURNS uuid
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

CREATE OR REPLACE FUNCTION email_sent(id uuid) RETURNS void
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
    -- Caused by the rating (metadata.causation_id): eventstore gives it the
    -- rating's correlation id, so the rating's story ends with its email.
    PERFORM eventstore.append('notification',
        jsonb_set(birdwatch.envelope(o.id, 'email', '1.0',
                                     jsonb_build_object('user', jsonb_build_object('id', o.user_id),
                                                        'message_type', 'rate.update',
                                                        'source_event', jsonb_build_object('name', 'rate',
                                                                                           'id', o.source_event,
                                                                                           'type', 'update')),
                                     'services/Notifier'),
                  '{metadata,causation_id}', to_jsonb(o.source_event)));
END
$$;
