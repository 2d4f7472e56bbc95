-- birdwatch 1.3 -> 1.4

-- The Notifier's sent emails and skips removed after their retention by
-- eventstore's retention passes; its ledger of ratings keyed by the
-- rating's id (sql/birdwatch/45_notifier.sql)

CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
-- One email per rating: the ledger of ratings decided, whatever the id.
CREATE UNIQUE INDEX outbox_source_event ON outbox (source_event);
COMMENT ON TABLE outbox IS 'Notifier: emails to send, sent ones kept as the record until their retention';
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

CREATE OR REPLACE FUNCTION notify_rating(e eventstore.event) RETURNS void
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

ALTER FUNCTION purge_notifier(timestamptz, integer) OWNER TO birdwatch_notifier;
SELECT pg_catalog.pg_extension_config_dump('notifier_forgotten', '');
REVOKE ALL ON notifier_forgotten FROM PUBLIC;
REVOKE ALL ON FUNCTION purge_notifier(timestamptz, integer) FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON notifier_forgotten TO birdwatch_notifier;
