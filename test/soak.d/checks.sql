-- test/soak.d/checks.sql: what the soak counts once the load is drained,
-- one row "metric|value" each.  test/soak has loaded soak.acked (what the
-- clients saw acknowledged) and soak.mails (the Message-ID of each message
-- the SMTP server received, one row per message).
--
-- The stored events are all the soak's: setup.sql started from a fresh
-- eventstore.  Every tick and rate has the image URL
-- https://birds.soak.test/<img>.jpg, <img> being the key in soak.acked.
\set ON_ERROR_STOP on
CREATE TEMP VIEW stored AS
SELECT e.id, e.topic, e.position, e.data,
       substring(e.data #>> '{image,url}' from '^https://birds\.soak\.test/([0-9]+)\.jpg$') AS img
  FROM eventstore.events e;
CREATE TEMP VIEW poison AS
SELECT id FROM stored WHERE topic = 'soak' AND (data->>'poison')::boolean;
CREATE TEMP VIEW outbox_state AS
SELECT o.*,
       CASE WHEN o.sent_at IS NOT NULL THEN 'sent'
            WHEN o.leased_until > now() THEN 'leased'
            ELSE 'waiting' END AS state,
       EXISTS (SELECT FROM soak.mails m WHERE m.message_id = o.id) AS mailed
  FROM birdwatch.outbox o;
-- AuthAPI's session window (birdwatch.login_window)
CREATE TEMP VIEW login_window AS
SELECT coalesce(nullif(current_setting('birdwatch.login_window', true), ''), '30min')::interval AS w;
CREATE TEMP VIEW stats_topics AS
SELECT unnest(topics) AS topic FROM eventstore.consumers WHERE name = 'birdwatch_statistics';
-- per topic: events stored, and counted by Statistics
CREATE TEMP VIEW stats_by_topic AS
SELECT t.topic,
       (SELECT count(*) FROM stored s WHERE s.topic = t.topic) AS stored,
       (SELECT coalesce(sum(d.events), 0) FROM birdwatch.stats_daily d WHERE d.topic = t.topic) AS counted
  FROM stats_topics t;

SELECT metric, value FROM (VALUES
    -- the store against what the clients saw
    ('acked_append', (SELECT count(*) FROM soak.acked WHERE kind = 'append')),
    ('acked_tick', (SELECT count(*) FROM soak.acked WHERE kind = 'tick')),
    ('acked_rate', (SELECT count(*) FROM soak.acked WHERE kind = 'rate')),
    ('stored_soak', (SELECT count(*) FROM stored WHERE topic = 'soak')),
    ('stored_tick', (SELECT count(*) FROM stored WHERE topic = 'tick')),
    ('stored_rate', (SELECT count(*) FROM stored WHERE topic = 'rate')),
    ('stored_all', (SELECT count(*) FROM stored)),
    ('acked_missing', (SELECT count(*) FROM soak.acked a
                        WHERE NOT EXISTS (SELECT FROM stored s WHERE s.id = a.id))),
    ('acked_wrong', (SELECT count(*) FROM soak.acked a JOIN stored s ON s.id = a.id
                      WHERE CASE a.kind WHEN 'append' THEN s.topic <> 'soak' OR s.position::text <> a.key
                                        ELSE s.topic <> a.kind OR s.img IS DISTINCT FROM a.key END)),
    ('unacked_soak', (SELECT count(*) FROM stored s WHERE s.topic = 'soak'
                        AND NOT EXISTS (SELECT FROM soak.acked a WHERE a.id = s.id))),
    ('unacked_birds', (SELECT count(*) FROM stored s WHERE s.topic IN ('tick', 'rate')
                         AND NOT EXISTS (SELECT FROM soak.acked a WHERE a.id = s.id))),
    ('stored_twice', (SELECT count(*) - count(DISTINCT id) FROM stored)
                     + (SELECT count(*) - count(DISTINCT img) FROM stored WHERE topic = 'tick')
                     + (SELECT count(*) - count(DISTINCT (img, data #>> '{user,id}')) FROM stored WHERE topic = 'rate')),
    ('birds_foreign', (SELECT count(*) FROM stored WHERE topic IN ('tick', 'rate') AND img IS NULL)),
    -- soak_ledger: every event handled once, the poison ones parked
    ('poison', (SELECT count(*) FROM poison)),
    ('ledger_missing', (SELECT count(*) FROM stored s WHERE s.topic = 'soak'
                          AND s.id NOT IN (SELECT id FROM poison)
                          AND NOT EXISTS (SELECT FROM soak.handled h WHERE h.event_id = s.id))),
    ('ledger_twice', (SELECT coalesce(sum(times - 1), 0) FROM soak.handled)),
    ('ledger_foreign', (SELECT count(*) FROM soak.handled h
                         WHERE h.event_id IN (SELECT id FROM poison)
                            OR NOT EXISTS (SELECT FROM stored s WHERE s.id = h.event_id AND s.topic = 'soak'))),
    ('poison_not_parked', (SELECT count(*) FROM poison p
                            WHERE NOT EXISTS (SELECT FROM eventstore.parked k
                                               WHERE k.consumer = 'soak_ledger' AND k.event_id = p.id))),
    ('parked_other', (SELECT count(*) FROM eventstore.parked k
                       WHERE k.consumer <> 'soak_ledger' OR k.event_id NOT IN (SELECT id FROM poison))),
    ('parked', (SELECT count(*) FROM eventstore.parked)),
    -- ScoreModel: each tick scored once
    ('score_missing', (SELECT count(*) FROM stored t WHERE t.topic = 'tick'
                         AND NOT (EXISTS (SELECT FROM stored s WHERE s.topic = 'score'
                                           AND s.id = eventstore.derived_id(t.id, 'birdwatch_score_model')
                                           AND s.data #>> '{image,url}' = t.data #>> '{image,url}')
                                  AND EXISTS (SELECT FROM birdwatch.scored_ticks k WHERE k.tick_id = t.id)))),
    ('score_twice', (SELECT count(*) - count(DISTINCT data #>> '{image,url}') FROM stored WHERE topic = 'score')),
    ('score_foreign', (SELECT count(*) FROM stored s WHERE s.topic = 'score'
                         AND NOT EXISTS (SELECT FROM stored t WHERE t.topic = 'tick'
                                          AND s.id = eventstore.derived_id(t.id, 'birdwatch_score_model')))),
    ('stored_score', (SELECT count(*) FROM stored WHERE topic = 'score')),
    -- Notifier: each rate one outbox row (every rater rates another's image)
    ('outbox_missing', (SELECT count(*) FROM stored r WHERE r.topic = 'rate'
                          AND NOT EXISTS (SELECT FROM birdwatch.outbox o
                                           WHERE o.id = eventstore.derived_id(r.id, 'birdwatch_notifier')
                                             AND o.source_event = r.id))),
    ('outbox_twice', (SELECT count(*) - count(DISTINCT source_event) FROM birdwatch.outbox)),
    ('outbox_foreign', (SELECT count(*) FROM birdwatch.outbox o
                         WHERE NOT EXISTS (SELECT FROM stored r WHERE r.topic = 'rate' AND r.id = o.source_event))),
    ('skips', (SELECT count(*) FROM birdwatch.notification_skips)),
    ('outbox', (SELECT count(*) FROM birdwatch.outbox)),
    ('outbox_sent', (SELECT count(*) FROM outbox_state WHERE state = 'sent')),
    ('outbox_leased', (SELECT count(*) FROM outbox_state WHERE state = 'leased')),
    ('outbox_leased_mailed', (SELECT count(*) FROM outbox_state WHERE state = 'leased' AND mailed)),
    ('outbox_waiting', (SELECT count(*) FROM outbox_state WHERE state = 'waiting')),
    ('lease_ends_in', (SELECT coalesce(ceil(extract(epoch FROM max(leased_until) - now())), 0)::bigint
                         FROM outbox_state WHERE state = 'leased')),
    ('notification_missing', (SELECT count(*) FROM outbox_state o WHERE o.state = 'sent'
                                AND NOT EXISTS (SELECT FROM stored n WHERE n.topic = 'notification' AND n.id = o.id))),
    ('notification_foreign', (SELECT count(*) FROM stored n WHERE n.topic = 'notification'
                                AND NOT EXISTS (SELECT FROM outbox_state o WHERE o.state = 'sent' AND o.id = n.id))),
    -- the SMTP server: every email sent is there, nothing else
    ('mails', (SELECT count(*) FROM soak.mails)),
    ('mails_distinct', (SELECT count(DISTINCT message_id) FROM soak.mails)),
    ('mails_missing', (SELECT count(*) FROM outbox_state WHERE state = 'sent' AND NOT mailed)),
    ('mails_foreign', (SELECT count(*) FROM soak.mails m
                        WHERE m.message_id IS NULL
                           OR NOT EXISTS (SELECT FROM birdwatch.outbox o WHERE o.id = m.message_id))),
    -- Statistics: every event of its topics counted once
    ('stats_missing', (SELECT count(*) FROM stored s WHERE s.topic IN (SELECT topic FROM stats_topics)
                         AND NOT EXISTS (SELECT FROM birdwatch.stats_seen k WHERE k.event_id = s.id))),
    ('stats_foreign', (SELECT count(*) FROM birdwatch.stats_seen k
                        WHERE NOT EXISTS (SELECT FROM stored s WHERE s.id = k.event_id))),
    ('stats_under', (SELECT coalesce(sum(greatest(stored - counted, 0)), 0) FROM stats_by_topic)
                    + greatest((SELECT count(*) FROM stored WHERE topic = 'rate')
                               - (SELECT coalesce(sum(ratings), 0) FROM birdwatch.stats_ratings), 0)
                    + greatest((SELECT count(*) FROM stored WHERE topic = 'score')
                               - (SELECT coalesce(sum(scores), 0) FROM birdwatch.stats_image_scores), 0)
                    + greatest((SELECT count(*) FROM stored WHERE topic = 'tick')
                               - (SELECT coalesce(sum(ticks), 0) FROM birdwatch.stats_user_ticks), 0)),
    ('stats_over', (SELECT coalesce(sum(greatest(counted - stored, 0)), 0) FROM stats_by_topic)
                   + greatest((SELECT coalesce(sum(ratings), 0) FROM birdwatch.stats_ratings)
                              - (SELECT count(*) FROM stored WHERE topic = 'rate'), 0)
                   + greatest((SELECT coalesce(sum(scores), 0) FROM birdwatch.stats_image_scores)
                              - (SELECT count(*) FROM stored WHERE topic = 'score'), 0)
                   + greatest((SELECT coalesce(sum(ticks), 0) FROM birdwatch.stats_user_ticks)
                              - (SELECT count(*) FROM stored WHERE topic = 'tick'), 0)),
    ('stats_seen', (SELECT count(*) FROM birdwatch.stats_seen)),
    -- AuthAPI: a stored tick or rate without a login of its watcher before it
    -- in the same session (birdwatch.login_window, within the UTC day), and
    -- logins of a watcher within a session begun by another
    ('logins', (SELECT count(*) FROM stored WHERE topic = 'user')),
    ('logins_of_watchers', (SELECT count(*) FROM eventstore.events e
                             WHERE e.topic = 'user' AND e.stream IN (SELECT user_id::text FROM soak.watchers))),
    ('logins_missing', (SELECT count(*) FROM eventstore.events c
                         WHERE c.topic IN ('tick', 'rate')
                           AND NOT EXISTS (SELECT FROM eventstore.events l
                                            WHERE l.topic = 'user' AND l.stream = c.data #>> '{user,id}'
                                              AND l.position < c.position
                                              AND l.recorded_at > c.recorded_at - (SELECT w FROM login_window)
                                              AND (l.recorded_at AT TIME ZONE 'UTC')::date
                                                  = (c.recorded_at AT TIME ZONE 'UTC')::date))),
    ('logins_twice', (SELECT count(*) FROM (SELECT e.recorded_at,
                                                   lag(e.recorded_at) OVER (PARTITION BY e.stream ORDER BY e.stream_version) AS prev
                                              FROM eventstore.events e WHERE e.topic = 'user') l
                       WHERE l.recorded_at - l.prev < (SELECT w FROM login_window)
                         AND (l.recorded_at AT TIME ZONE 'UTC')::date = (l.prev AT TIME ZONE 'UTC')::date)),
    -- consumers
    ('consumers', (SELECT count(*) FROM eventstore.consumer_status)),
    ('lagging', (SELECT count(*) FROM eventstore.consumer_status WHERE lag_events > 0)),
    ('failing', (SELECT count(*) FROM eventstore.consumer_status WHERE attempts > 0))
) AS m(metric, value);
