-- sql/birdwatch/15_topics.sql: the topics of docs/events.md, their
-- protected personal fields, and which service may append to and consume
-- each.

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

-- Each service appends to and consumes its own topics only.  TickAPI
-- reads rate: the rate upcaster runs as its owner, birdwatch_tick_api
-- (35_tick_api.sql), and an upcaster's role must be allowed to read the
-- topic, at registration and at every call.
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
               ('audit', 'read', 'birdwatch_statistics'),
               ('rate', 'read', 'birdwatch_tick_api')) AS g(topic, privilege, grantee);
