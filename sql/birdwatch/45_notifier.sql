-- sql/birdwatch/45_notifier.sql: the Notifier: a consumer of rate that
-- writes one outbox row per email, and the calls eventstore-worker makes
-- to send them (claim_emails, email_sent, email_failed); the removal of
-- sent emails and skips after their retention.

/*
 * One row per email to send.  The row is written in the transaction that
 * consumes the rate event, keyed by a notification id derived from it, so a
 * redelivered event writes nothing new.  eventstore-worker claims due rows
 * (claim_emails), sends them over SMTP with the notification id as
 * Message-ID, and reports each with email_sent or email_failed; a failed
 * row is retried with backoff and is never dropped.  The address is looked
 * up when the row is claimed: personal data stays in UserAPI's tables.
 * A sent row is removed after its retention (purge_notifier).
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
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
-- One email per rating: the ledger of ratings decided, whatever the id.
CREATE UNIQUE INDEX outbox_source_event ON outbox (source_event);
COMMENT ON TABLE outbox IS 'Notifier: emails to send, sent ones kept as the record until their retention';

CREATE TABLE notification_skips (
    source_event uuid PRIMARY KEY,
    reason       text NOT NULL CHECK (reason IN ('own image', 'no address', 'unknown user', 'invalid event')),
    recorded_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX notification_skips_recorded ON notification_skips (recorded_at);
COMMENT ON TABLE notification_skips IS 'Notifier: rate events that sent no email, and why, until their retention';

-- The rows of every rating recorded before forgotten_before may have been
-- removed (purge_notifier): such a rating, delivered again (a replay), is
-- passed over, never mailed a second time.
CREATE TABLE notifier_forgotten (
    only_row         boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    forgotten_before timestamptz NOT NULL
);
COMMENT ON TABLE notifier_forgotten IS 'Notifier: ratings recorded before this may have lost their outbox row or skip';

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
    -- By the rating's id, not the notification id derived from it, which
    -- changes when derived ids take a key (eventstore.set_derived_id_key).
    IF EXISTS (SELECT FROM birdwatch.outbox o WHERE o.source_event = e.id)
       OR EXISTS (SELECT FROM birdwatch.notification_skips k WHERE k.source_event = e.id) THEN
        RETURN;
    END IF;
    -- Older than rows already removed: it may have been decided.  Read
    -- after the ledgers, so that rows removed since they were read are
    -- seen here (their removal commits with the new horizon).
    IF e.recorded_at < (SELECT f.forgotten_before FROM birdwatch.notifier_forgotten f) THEN
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
    ON CONFLICT DO NOTHING;
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

-- The lease is a setting, birdwatch.email_lease (default 5min): the
-- emails of a daemon killed mid-batch, or whose "sent" mark a server
-- crash lost, wait that long.  It must outlast one batch (max emails x the
-- SMTP timeout), or an email goes out twice while the first daemon still
-- sends it.
CREATE FUNCTION claim_emails(max integer DEFAULT 10)
RETURNS TABLE (id uuid, recipient text, subject text, body text, attempt integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o     birdwatch.outbox;
    addr  record;
    lease interval := coalesce(nullif(current_setting('birdwatch.email_lease', true), ''), '5min')::interval;
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
        UPDATE birdwatch.outbox b SET leased_until = now() + lease WHERE b.id = o.id;
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
    'Notifier, for eventstore-worker: lease up to max due emails for birdwatch.email_lease (5 minutes), with their address and text';

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

/*
 * The cleanup the eventstore retention passes run (eventstore.register_cleanup,
 * retention 30 days: eventstore.set_cleanup_retention('birdwatch_notifier',
 * ...)): at most max rows, sent emails first, then skips, older than
 * older_than.  Unsent emails stay, however old.  Runs as the Notifier,
 * with its grants alone.
 */
CREATE FUNCTION purge_notifier(older_than timestamptz, max integer) RETURNS bigint
LANGUAGE plpgsql STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sent  bigint;
    skips bigint := 0;
BEGIN
    WITH gone AS (
        DELETE FROM birdwatch.outbox o
         WHERE o.id = ANY (ARRAY(SELECT o2.id FROM birdwatch.outbox o2
                                  WHERE o2.sent_at < older_than
                                  ORDER BY o2.sent_at LIMIT max))
        RETURNING 1)
    SELECT count(*) INTO sent FROM gone;
    IF sent < max THEN
        WITH gone AS (
            DELETE FROM birdwatch.notification_skips k
             WHERE k.source_event = ANY (ARRAY(SELECT k2.source_event FROM birdwatch.notification_skips k2
                                                WHERE k2.recorded_at < older_than
                                                ORDER BY k2.recorded_at LIMIT max - sent))
            RETURNING 1)
        SELECT count(*) INTO skips FROM gone;
    END IF;
    -- A rating's rows come after it was recorded: every rating whose rows
    -- went was recorded before older_than.
    IF sent + skips > 0 THEN
        INSERT INTO birdwatch.notifier_forgotten AS f (forgotten_before) VALUES (older_than)
        ON CONFLICT (only_row) DO UPDATE SET forgotten_before = greatest(f.forgotten_before, excluded.forgotten_before);
    END IF;
    RETURN sent + skips;
END
$$;
COMMENT ON FUNCTION purge_notifier(timestamptz, integer) IS
    'Notifier, for the eventstore retention passes: remove up to max sent emails and skips older than older_than';
SELECT eventstore.register_cleanup('birdwatch_notifier', 'birdwatch.purge_notifier(timestamptz, integer)');

ALTER FUNCTION notify_rating(eventstore.event) OWNER TO birdwatch_notifier;
ALTER FUNCTION purge_notifier(timestamptz, integer) OWNER TO birdwatch_notifier;
ALTER FUNCTION claim_emails(integer) OWNER TO birdwatch_notifier;
ALTER FUNCTION email_sent(uuid) OWNER TO birdwatch_notifier;
ALTER FUNCTION email_failed(uuid, text) OWNER TO birdwatch_notifier;

-- pg_dump: the data of these tables belongs in a dump (one call per
-- statement: each call rewrites the extension's catalog row).
SELECT pg_catalog.pg_extension_config_dump('outbox', '');
SELECT pg_catalog.pg_extension_config_dump('notification_skips', '');
SELECT pg_catalog.pg_extension_config_dump('notifier_forgotten', '');
