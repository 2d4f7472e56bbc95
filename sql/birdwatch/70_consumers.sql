-- sql/birdwatch/70_consumers.sql: the in-database consumers of the
-- services, each running as its service's role.  After every handler
-- exists.

-- Members (eventstore 1.3) spread a consumer's events over parallel
-- batches by stream; events without a stream, as all of birdwatch's but
-- the logins, by their id: two such events are then in no order at all.
-- Only the Notifier has more than one (BIRDWATCH.md, "Consumers and their
-- members"): each rating's email is decided on its own, from rows keyed by
-- that rating.  ScoreModel and the gdpr consumer gain nothing; Statistics
-- must handle a watcher's gdpr event after their ticks and logins, and its
-- batches would deadlock on the shared counter rows they upsert.
DO $check$
BEGIN
    IF pg_catalog.to_regprocedure('eventstore.set_consumer_members(text, integer)') IS NULL THEN
        RAISE EXCEPTION 'birdwatch 1.3 needs eventstore 1.3 or later'
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('eventstore is at version %s, without consumer members.',
                                  (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'eventstore')),
                  HINT = 'Run ALTER EXTENSION eventstore UPDATE first.';
    END IF;
END
$check$;

-- Consumers are eventstore's rows, not the extension's objects: a
-- re-created extension takes over the ones it left, as they are (members
-- included).  New ones start after the last stored event, except
-- Statistics, which counts the history into its new tables: events of an
-- earlier installation were scored, mailed and erased by it, and must not
-- be again.
DO $consumers$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT * FROM (VALUES
            ('birdwatch_score_model', ARRAY['tick'], 'birdwatch.score_tick(eventstore.event)',
             'birdwatch_score_model', 1),
            ('birdwatch_notifier', ARRAY['rate'], 'birdwatch.notify_rating(eventstore.event)',
             'birdwatch_notifier', 4),
            ('birdwatch_statistics', ARRAY['tick', 'rate', 'score', 'notification', 'gdpr', 'user', 'audit'],
             'birdwatch.count_event(eventstore.event)', 'birdwatch_statistics', 1),
            ('birdwatch_user_gdpr', ARRAY['gdpr'], 'birdwatch.forget_user(eventstore.event)',
             'birdwatch_user_api', 1))
            AS v(name, topics, handler, run_as, members)
    LOOP
        IF NOT EXISTS (SELECT FROM eventstore.consumers WHERE name = c.name) THEN
            PERFORM eventstore.create_consumer(c.name, c.topics, c.handler::regprocedure,
                                               batch_size => 500, run_as => c.run_as::regrole,
                                               members => c.members);
            IF c.name <> 'birdwatch_statistics' THEN
                PERFORM eventstore.reset_consumer(c.name,
                                                  (SELECT coalesce(max(position), 0) FROM eventstore.events));
            END IF;
        END IF;
    END LOOP;
END
$consumers$;
