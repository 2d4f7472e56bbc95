-- sql/birdwatch/70_consumers.sql: the in-database consumers of the
-- services, each running as its service's role.  After every handler
-- exists.

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
