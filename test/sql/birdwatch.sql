-- birdwatch: every service call with its refusals, the exact shape of every
-- event of docs/events.md, upcasting of stored rate 1.0 events, the consumers
-- (run here with run_consumer: this database has no dispatcher), replay
-- without duplicate effects, and erasure.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION birdwatch CASCADE;
DROP SCHEMA IF EXISTS test_birdwatch CASCADE;
CREATE SCHEMA test_birdwatch;
SET search_path = test_birdwatch, public;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

-- An event's structure: ids and times replaced by the placeholders of
-- docs/events.md, so that it can be compared with the contract as written.
CREATE FUNCTION shape(envelope jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT regexp_replace(
               regexp_replace(envelope::text,
                              '"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"',
                              '"<uuid>"', 'g'),
               '"time": "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"',
               '"time": "<RFC3339>"', 'g')::jsonb
$$;
CREATE FUNCTION events_of(t text) RETURNS SETOF jsonb LANGUAGE sql AS $$
    SELECT envelope FROM eventstore.read(t, 0, 10000)
$$;
-- Runs every birdwatch consumer until none has anything left, committing
-- each round: what a consumer appends is visible to the others only then.
CREATE PROCEDURE run_all() LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    LOOP
        SELECT sum(eventstore.run_consumer(name)) INTO n
          FROM eventstore.consumers WHERE name LIKE 'birdwatch\_%';
        COMMIT;
        EXIT WHEN n = 0;
    END LOOP;
END
$$;
-- What the consumers' effects look like, to compare before and after a replay.
CREATE FUNCTION effects() RETURNS TABLE (what text, n bigint) LANGUAGE sql AS $$
    SELECT 'score events', count(*) FROM eventstore.events WHERE topic = 'score'
    UNION ALL SELECT 'outbox rows', count(*) FROM birdwatch.outbox
    UNION ALL SELECT 'skipped notifications', count(*) FROM birdwatch.notification_skips
    UNION ALL SELECT 'statistics: events counted', sum(events) FROM birdwatch.stats_daily
    UNION ALL SELECT 'statistics: ratings', sum(ratings) FROM birdwatch.stats_ratings
    UNION ALL SELECT 'statistics: images scored', sum(scores) FROM birdwatch.stats_image_scores
    UNION ALL SELECT 'statistics: ticks per user', sum(ticks) FROM birdwatch.stats_user_ticks
    UNION ALL SELECT 'statistics: distinct logins', sum(users) FROM birdwatch.stats_daily_logins
$$;

-- A fixed secret, so that the scores below are the same on every run.
SELECT birdwatch.set_score_secret('a secret of the test suite');

------------------------------------------------------------------------------
-- UserAPI: register_user
------------------------------------------------------------------------------
SELECT user_id AS alice, token AS alice_token
  FROM birdwatch.register_user('Alice@Example.org', 'Alice') \gset
SELECT user_id AS bob, token AS bob_token
  FROM birdwatch.register_user('bob@example.org', 'Bob') \gset
SELECT user_id AS carol, token AS carol_token
  FROM birdwatch.register_user('carol.d+birds@mail.example.net', 'Carol D.') \gset
-- Tokens: 244 random bits, returned once, stored only as a hash.
SELECT :'alice_token' ~ '^bw_[0-9a-f]{64}$' AS token_format,
       (SELECT count(*) FROM birdwatch.tokens WHERE hash = sha256(convert_to(:'alice_token', 'UTF8'))) AS stored_hash,
       (SELECT count(*) FROM birdwatch.tokens t
         WHERE position(convert_to(:'alice_token', 'UTF8') IN t.hash) > 0) AS stored_plain;
SELECT count(*) AS users FROM birdwatch.users;
-- Refusals
SELECT * FROM birdwatch.register_user(NULL, 'x');
SELECT * FROM birdwatch.register_user('alice@example.org', 'Alice again');
SELECT * FROM birdwatch.register_user('no-at-sign', 'x');
SELECT * FROM birdwatch.register_user('two@@example.org', 'x');
SELECT * FROM birdwatch.register_user('user@localhost', 'x');
SELECT * FROM birdwatch.register_user('sp ace@example.org', 'x');
SELECT * FROM birdwatch.register_user(E'x@example.org\r\nBcc: y@example.org', 'x');
SELECT * FROM birdwatch.register_user(repeat('a', 65) || '@example.org', 'x');
SELECT * FROM birdwatch.register_user(repeat('a', 64) || '@' || repeat('b', 190) || '.org', 'x');
SELECT * FROM birdwatch.register_user('dave@example.org', NULL);
SELECT * FROM birdwatch.register_user('dave@example.org', '   ');
SELECT * FROM birdwatch.register_user('dave@example.org', repeat('n', 101));
SELECT * FROM birdwatch.register_user('dave@example.org', E'Dave\nBcc');
SELECT count(*) AS users_still FROM birdwatch.users;

------------------------------------------------------------------------------
-- AuthAPI: login
------------------------------------------------------------------------------
SELECT birdwatch.login(:'alice_token') = :'alice' AS alice_logs_in;
SELECT birdwatch.login(NULL);
SELECT birdwatch.login('');
SELECT birdwatch.login(repeat('t', 1025));
-- An unknown non-empty token is accepted (AuthAPI is naive by design): it
-- stands for a new watcher without email or name, the same on every use.
SELECT birdwatch.login('an unknown token') AS anonymous \gset
SELECT birdwatch.login('an unknown token') = :'anonymous' AS same_watcher_again,
       :'anonymous' NOT IN (:'alice', :'bob', :'carol') AS a_new_watcher,
       (SELECT email IS NULL AND display_name IS NULL FROM birdwatch.users WHERE id = :'anonymous') AS no_personal_data;
SELECT shape(e) AS login_event FROM events_of('user') e LIMIT 1;
SELECT count(*) AS login_events FROM events_of('user');

------------------------------------------------------------------------------
-- TickAPI: tick, rate, forget_me
------------------------------------------------------------------------------
SELECT birdwatch.tick(:'alice_token', 'https://birds.example.org/owl.jpg') AS owl_tick \gset
SELECT birdwatch.tick(:'alice_token', 'https://birds.example.org/owl.jpg') = :'owl_tick' AS retry_returns_the_same_event;
SELECT birdwatch.tick(:'bob_token', 'http://birds.example.org:8080/path/wren.png?size=large#top') IS NOT NULL AS bob_ticks;
SELECT birdwatch.tick(:'carol_token', 'https://birds.example.org/heron.jpg') IS NOT NULL AS carol_ticks;
SELECT birdwatch.tick('an unknown token', 'https://birds.example.org/crow.jpg') IS NOT NULL AS anonymous_ticks;
SELECT shape(e) AS tick_event FROM events_of('tick') e LIMIT 1;
SELECT image_url, owner = :'alice' AS alice_owns FROM birdwatch.ticks ORDER BY image_url;
-- Refusals: authentication first, then the arguments in order.
SELECT birdwatch.tick(NULL, 'https://birds.example.org/a.jpg');
SELECT birdwatch.tick('', NULL);
SELECT birdwatch.tick(:'bob_token', NULL);
SELECT birdwatch.tick(:'bob_token', 'https://birds.example.org/owl.jpg');
SELECT birdwatch.tick(:'bob_token', 'ftp://birds.example.org/a.jpg');
SELECT birdwatch.tick(:'bob_token', '/images/a.jpg');
SELECT birdwatch.tick(:'bob_token', 'https://');
SELECT birdwatch.tick(:'bob_token', 'https://user:pw@birds.example.org/a.jpg');
SELECT birdwatch.tick(:'bob_token', 'https://birds.example.org/a b.jpg');
SELECT birdwatch.tick(:'bob_token', E'https://birds.example.org/a.jpg\n');
SELECT birdwatch.tick(:'bob_token', 'javascript:alert(1)');
SELECT birdwatch.tick(:'bob_token', 'https://birds.example.org/' || repeat('a', 2030));
SELECT count(*) AS ticks FROM birdwatch.ticks;

-- Login sessions: a TickAPI call appends user/login only when its watcher's
-- session window (birdwatch.login_window, 30min) is over or began on an
-- earlier UTC day; an explicit login always appends one and starts a
-- session.  Alice's calls here are retries of her owl, which append nothing
-- else.
CREATE TEMP VIEW alice_logins AS
    SELECT count(*) AS n FROM eventstore.events WHERE topic = 'user' AND stream = :'alice';
SELECT n AS alice_logins FROM alice_logins \gset
SELECT birdwatch.tick(:'alice_token', 'https://birds.example.org/owl.jpg') = :'owl_tick' AS call_in_session;
SELECT n - :alice_logins AS new_logins_within_the_session FROM alice_logins;
SELECT birdwatch.login(:'alice_token') = :'alice' AS explicit_login;
SELECT n - :alice_logins AS new_logins_after_an_explicit_login FROM alice_logins;
-- A refused call leaves no session behind: it rolls back with the login.
UPDATE birdwatch.login_sessions SET started_at = now() - interval '31 minutes' WHERE user_id = :'alice';
SELECT birdwatch.tick(:'alice_token', 'ftp://birds.example.org/refused.jpg');
SELECT n - :alice_logins AS new_logins_after_a_refused_call FROM alice_logins;
SELECT birdwatch.tick(:'alice_token', 'https://birds.example.org/owl.jpg') = :'owl_tick' AS call_after_the_window;
SELECT n - :alice_logins AS new_logins_after_the_window FROM alice_logins;
UPDATE birdwatch.login_sessions
   SET started_at = (date_trunc('day', now() AT TIME ZONE 'UTC') - interval '1 second') AT TIME ZONE 'UTC'
 WHERE user_id = :'alice';
SELECT birdwatch.tick(:'alice_token', 'https://birds.example.org/owl.jpg') = :'owl_tick' AS call_on_a_new_day;
SELECT n - :alice_logins AS new_logins_on_a_new_day FROM alice_logins;
SET birdwatch.login_window = '0';
SELECT birdwatch.tick(:'alice_token', 'https://birds.example.org/owl.jpg') = :'owl_tick' AS call_without_window;
SELECT n - :alice_logins AS new_logins_without_window FROM alice_logins;
RESET birdwatch.login_window;
DROP VIEW alice_logins;

SELECT birdwatch.rate(:'bob_token', 'https://birds.example.org/owl.jpg', 4) AS owl_rating \gset
SELECT shape(e) AS rate_event FROM events_of('rate') e;
SELECT e #>> '{data,image,owner}' = :'alice' AS owner_from_the_ticks_store,
       e #>> '{data,user,id}' = :'bob' AS rater
  FROM events_of('rate') e;
SELECT birdwatch.rate(:'alice_token', 'https://birds.example.org/owl.jpg', 5) IS NOT NULL AS own_image;
SELECT birdwatch.rate(:'bob_token', 'https://birds.example.org/crow.jpg', 1) IS NOT NULL AS anonymous_owner;
SELECT birdwatch.rate(:'bob_token', 'https://birds.example.org/heron.jpg', 3) IS NOT NULL AS carol_owner;
-- Refusals
SELECT birdwatch.rate('', 'https://birds.example.org/owl.jpg', 3);
SELECT birdwatch.rate(:'bob_token', 'https://birds.example.org/owl.jpg', NULL);
SELECT birdwatch.rate(:'bob_token', 'https://birds.example.org/owl.jpg', 0);
SELECT birdwatch.rate(:'bob_token', 'https://birds.example.org/owl.jpg', 6);
SELECT birdwatch.rate(:'bob_token', 'https://birds.example.org/never-ticked.jpg', 3);
SELECT birdwatch.rate(:'bob_token', 'not a url', 3);
SELECT count(*) AS rate_events FROM events_of('rate');

------------------------------------------------------------------------------
-- rate 1.0 -> 2.0: an old event, stored as it was written, reaches readers
-- and consumers as 2.0 with the owner from the ticks store
------------------------------------------------------------------------------
SELECT eventstore.append('rate', jsonb_build_object(
    'id', 'a1a1a1a1-0000-4000-8000-000000000001', 'type', 'update', 'version', '1.0',
    'data', jsonb_build_object('user', jsonb_build_object('id', :'carol'),
                               'image_url', 'https://birds.example.org/owl.jpg', 'rating', 2),
    'metadata', jsonb_build_object('source', 'services/TickAPI', 'time', '2019-05-01T08:00:00Z'))) > 0 AS old_rate_stored;
SELECT shape(envelope) AS stored FROM eventstore.stored_events
 WHERE id = 'a1a1a1a1-0000-4000-8000-000000000001';
SELECT shape((eventstore.upcast(e)).envelope) AS upcast,
       (eventstore.upcast(e)).envelope #>> '{data,image,owner}' = :'alice' AS owner_is_the_ticker
  FROM eventstore.get('a1a1a1a1-0000-4000-8000-000000000001') e;
-- An old rate of an image nobody ticked cannot be upcast: it is refused on
-- the way out (and a consumer would retry, then park it), never guessed.
SELECT eventstore.append('rate', jsonb_build_object(
    'id', 'a1a1a1a1-0000-4000-8000-000000000002', 'type', 'update', 'version', '1.0',
    'data', jsonb_build_object('user', jsonb_build_object('id', :'carol'),
                               'image_url', 'https://birds.example.org/lost.jpg', 'rating', 2),
    'metadata', jsonb_build_object('source', 'services/TickAPI', 'time', '2019-05-01T08:00:00Z'))) > 0 AS orphan_stored;
SELECT eventstore.upcast(e) FROM eventstore.get('a1a1a1a1-0000-4000-8000-000000000002') e;
-- Out of the way of the consumers below: this test is not about parking.
DELETE FROM eventstore.events WHERE id = 'a1a1a1a1-0000-4000-8000-000000000002';

SELECT birdwatch.forget_me(:'carol_token') AS carol_gdpr \gset
SELECT shape(e) AS gdpr_event FROM events_of('gdpr') e;
SELECT e #>> '{data,user,id}' = :'carol' AS names_carol FROM events_of('gdpr') e;
SELECT birdwatch.forget_me(NULL);

------------------------------------------------------------------------------
-- The consumers
------------------------------------------------------------------------------
CALL run_all();
SELECT name, lag_events, attempts, parked, last_error
  FROM eventstore.consumer_status WHERE name LIKE 'birdwatch\_%' ORDER BY name;

-- ScoreModel: one score per tick, deterministic, with a derived id.
SELECT shape(e) AS score_event FROM events_of('score') e LIMIT 1;
SELECT e #>> '{data,image,url}' AS image, (e->'data'->>'score')::int AS score,
       (e->>'id')::uuid = eventstore.derived_id(t.event_id, 'birdwatch_score_model') AS derived_id
  FROM events_of('score') e JOIN birdwatch.ticks t ON t.image_url = e #>> '{data,image,url}'
 ORDER BY 1;
SELECT bool_and((e->'data'->>'score')::int BETWEEN 1 AND 5) AS scores_in_range FROM events_of('score') e;

-- Notifier: an outbox row for each rating of someone else's image whose
-- owner has an address; the reason recorded for every other one.
SELECT o.user_id = :'alice' AS to_alice, o.rating, o.image_url,
       o.id = eventstore.derived_id(o.source_event, 'birdwatch_notifier') AS derived_id
  FROM birdwatch.outbox o ORDER BY o.rating;
SELECT reason, count(*) FROM birdwatch.notification_skips GROUP BY reason ORDER BY reason;

-- UserAPI's gdpr consumer: Carol's data and tokens are gone.
SELECT count(*) AS carol_rows FROM birdwatch.users WHERE id = :'carol';
SELECT count(*) AS carol_tokens FROM birdwatch.tokens WHERE user_id = :'carol';
SELECT count(*) AS users_with_email FROM birdwatch.users WHERE email IS NOT NULL;
-- Her token is unknown now: it would stand for a new, anonymous watcher.
SELECT birdwatch.login(:'carol_token') <> :'carol' AS carol_token_is_a_stranger;

-- Statistics: per-user rows of the forgotten user are gone.
SELECT count(*) AS carol_tick_stats FROM birdwatch.stats_user_ticks WHERE user_id = :'carol';
SELECT count(*) AS carol_login_stats FROM birdwatch.stats_login_seen WHERE user_id = :'carol';
SELECT birdwatch.overview() - 'distinct_logins_today' AS overview;
SELECT ticks, ratings, scores, emails_sent, deletions, logins, distinct_logins
  FROM birdwatch.daily((now() AT TIME ZONE 'UTC')::date, (now() AT TIME ZONE 'UTC')::date);
SELECT birdwatch.daily(NULL, '2026-01-01');
SELECT birdwatch.daily('2026-01-02', '2026-01-01');
SELECT birdwatch.daily('2026-01-01', '2040-01-01');

------------------------------------------------------------------------------
-- Replay: reset every consumer to 0 and run them again; nothing changes
------------------------------------------------------------------------------
CALL run_all();
CREATE TEMP TABLE before AS SELECT * FROM effects();
SELECT * FROM before ORDER BY what;
SELECT eventstore.reset_consumer(name, 0) FROM eventstore.consumers WHERE name LIKE 'birdwatch\_%';
CALL run_all();
SELECT e.what, e.n AS after, b.n AS before
  FROM effects() e JOIN before b USING (what)
 WHERE e.n IS DISTINCT FROM b.n;
SELECT name, lag_events, attempts, parked, last_error
  FROM eventstore.consumer_status WHERE name LIKE 'birdwatch\_%' ORDER BY name;
SELECT count(*) AS carol_rows_after_replay FROM birdwatch.users WHERE email LIKE 'carol%';

------------------------------------------------------------------------------
-- The outbox, as eventstore-worker drives it
------------------------------------------------------------------------------
SET birdwatch.email_retry_delay = '1 hour';
SELECT count(*) AS claimed, min(recipient) AS recipient, min(attempt) AS attempt,
       bool_and(subject LIKE 'Your bird was rated % of 5') AS subject,
       bool_and(body LIKE '%https://birds.example.org/owl.jpg%') AS body
  FROM birdwatch.claim_emails(10);
SELECT count(*) AS leased_so_not_again FROM birdwatch.claim_emails(10);
SELECT id AS first_email FROM birdwatch.outbox ORDER BY rating LIMIT 1 \gset
SELECT id AS second_email FROM birdwatch.outbox ORDER BY rating DESC LIMIT 1 \gset
SELECT birdwatch.email_sent(:'first_email');
SELECT birdwatch.email_sent(:'first_email');
SELECT shape(e) AS notification_event FROM events_of('notification') e;
SELECT e->>'id' = :'first_email' AS id_is_the_notification_id,
       e #>> '{data,user,id}' = :'alice' AS to_alice,
       e #>> '{data,source_event,id}' = (SELECT source_event::text FROM birdwatch.outbox WHERE id = :'first_email') AS source
  FROM events_of('notification') e;
-- Stories: the notification is caused by its rating and shares the
-- rating's correlation id; a tick's score shares the tick's.  One
-- read_correlated each.
SELECT e #>> '{metadata,causation_id}' = e #>> '{data,source_event,id}' AS caused_by_the_rating
  FROM events_of('notification') e;
SELECT topic, envelope->>'type' AS type, envelope #>> '{metadata,causation_id}' AS causation
  FROM eventstore.read_correlated((SELECT source_event FROM birdwatch.outbox WHERE id = :'first_email'))
 ORDER BY position;
SELECT topic, envelope->>'type' AS type, envelope #>> '{metadata,causation_id}' = :'owl_tick' AS caused_by_the_tick
  FROM eventstore.read_correlated(:'owl_tick') ORDER BY position;
SELECT birdwatch.email_failed(:'second_email', 'smtp: connection refused');
SELECT attempts, last_error, retry_at > now() + interval '59 minutes' AS backs_off, sent_at IS NULL AS unsent
  FROM birdwatch.outbox WHERE id = :'second_email';
SELECT count(*) AS not_due_yet FROM birdwatch.claim_emails(10);
SELECT * FROM birdwatch.claim_emails(0);
SELECT * FROM birdwatch.claim_emails(NULL);

------------------------------------------------------------------------------
-- AdminAPI
------------------------------------------------------------------------------
SELECT (birdwatch.admin_overview()->>'users')::int AS users,
       jsonb_array_length(birdwatch.admin_overview()->'consumers') AS consumers;
SELECT count(*) AS listed FROM birdwatch.list_users();
SELECT * FROM birdwatch.list_users(0);
SELECT * FROM birdwatch.list_users(10, -1);
SELECT birdwatch.delete_user(NULL);
SELECT birdwatch.delete_user('00000000-0000-4000-8000-000000000000');
SELECT birdwatch.delete_user(:'bob') IS NOT NULL AS bob_deleted;
SELECT shape(e) AS audit_event FROM events_of('audit') e ORDER BY e->'data'->>'action';
SELECT e #>> '{data,actor,role}' = current_user AS names_the_actor,
       position('a secret of the test suite' IN e::text) = 0 AS no_secret
  FROM events_of('audit') e;
SELECT birdwatch.set_score_secret('short');
CALL run_all();
SELECT count(*) AS bob_rows FROM birdwatch.users WHERE id = :'bob';

------------------------------------------------------------------------------
-- Every refusal above, with its SQLSTATE
------------------------------------------------------------------------------
CREATE FUNCTION refusal(call text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE call;
    RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END
$$;
SELECT call, refusal(call) FROM (VALUES
    ($$SELECT birdwatch.register_user(NULL, 'x')$$),
    ($$SELECT birdwatch.register_user('ALICE@example.org', 'x')$$),
    ($$SELECT birdwatch.register_user('no-at-sign', 'x')$$),
    ($$SELECT birdwatch.register_user(repeat('a', 250) || '@example.org', 'x')$$),
    ($$SELECT birdwatch.register_user('dave@example.org', NULL)$$),
    ($$SELECT birdwatch.register_user('dave@example.org', '')$$),
    ($$SELECT birdwatch.login(NULL)$$),
    ($$SELECT birdwatch.login('')$$),
    ($$SELECT birdwatch.login(repeat('t', 1025))$$),
    ($$SELECT birdwatch.tick('t', NULL)$$),
    ($$SELECT birdwatch.tick('t', 'https://birds.example.org/' || repeat('a', 2030))$$),
    ($$SELECT birdwatch.tick('t', 'ftp://birds.example.org/a.jpg')$$),
    ($$SELECT birdwatch.tick('t', 'https://birds.example.org/owl.jpg')$$),
    ($$SELECT birdwatch.rate('t', 'https://birds.example.org/owl.jpg', NULL)$$),
    ($$SELECT birdwatch.rate('t', 'https://birds.example.org/owl.jpg', 0)$$),
    ($$SELECT birdwatch.rate('t', 'https://birds.example.org/nope.jpg', 3)$$),
    ($$SELECT birdwatch.forget_me('')$$),
    ($$SELECT birdwatch.claim_emails(0)$$),
    ($$SELECT birdwatch.list_users(0)$$),
    ($$SELECT birdwatch.delete_user(NULL)$$),
    ($$SELECT birdwatch.delete_user('00000000-0000-4000-8000-000000000000')$$),
    ($$SELECT birdwatch.set_score_secret('short')$$),
    ($$SELECT birdwatch.daily(NULL, '2026-01-01')$$),
    ($$SELECT birdwatch.daily('2026-01-02', '2026-01-01')$$)) AS v(call);

------------------------------------------------------------------------------
-- Events written by hand in shapes the API never writes (any holder of a
-- topic's append right can): the consumers skip what they cannot use, and
-- park nothing
------------------------------------------------------------------------------
CREATE FUNCTION forged(n int, data jsonb, version text DEFAULT '2.0') RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'id', ('f0000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid,
        'type', 'update', 'version', version, 'data', data,
        'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z'))
$$;
SELECT eventstore.append('rate', forged(1, jsonb_build_object(
           'user', jsonb_build_object('id', :'bob'),
           'image', jsonb_build_object('url', 'https://birds.example.org/owl.jpg', 'owner', :'alice'),
           'rating', 0))) > 0 AS rating_0,
       eventstore.append('rate', forged(2, jsonb_build_object(
           'user', jsonb_build_object('id', :'bob'),
           'image', jsonb_build_object('url', 'https://birds.example.org/owl.jpg', 'owner', 'not-a-uuid'),
           'rating', 3))) > 0 AS bad_owner,
       eventstore.append('rate', forged(3, '{}')) > 0 AS empty_rate,
       eventstore.append('tick', forged(4, jsonb_build_object(
           'user', jsonb_build_object('id', 42),
           'image', jsonb_build_object('url', 'https://x.example.org/' || repeat('a', 3000))), '1.0')) > 0 AS huge_url,
       eventstore.append('user', forged(5, '{"user": {"id": 42}}', '1.0')) > 0 AS numeric_user_id,
       eventstore.append('gdpr', forged(6, '{"user": {"id": "x"}}', '1.0')) > 0 AS bad_gdpr;
-- user events must name their subject: the topic encrypts personal fields.
SELECT eventstore.append('user', forged(7, '{"user": {}}', '1.0'));
CALL run_all();
SELECT name, lag_events, attempts, parked, last_error
  FROM eventstore.consumer_status WHERE name LIKE 'birdwatch\_%' ORDER BY name;
SELECT reason, count(*) FROM birdwatch.notification_skips
 WHERE source_event::text LIKE 'f0000000%' GROUP BY reason;
SELECT count(*) AS forged_in_outbox FROM birdwatch.outbox WHERE source_event::text LIKE 'f0000000%';
SELECT count(*) AS forged_counted FROM birdwatch.stats_seen WHERE event_id::text LIKE 'f0000000%';
SELECT count(*) AS forged_scored FROM eventstore.events
 WHERE topic = 'score' AND id = eventstore.derived_id('f0000000-0000-4000-8000-000000000004', 'birdwatch_score_model');
-- Display names cannot hide text direction tricks or invisible characters.
SELECT * FROM birdwatch.register_user('eve@example.org', E'Eve\u202Egnp.exe');
SELECT * FROM birdwatch.register_user('eve@example.org', E'E\u200Bve');

------------------------------------------------------------------------------
-- Erasure at once, and the right of access
------------------------------------------------------------------------------
-- Carol's logins were erased with her (her stream of the user topic).
SELECT count(*) AS carol_login_events FROM eventstore.events
 WHERE topic = 'user' AND data #>> '{user,id}' = :'carol';
SELECT count(*) AS carol_user_stream FROM eventstore.streams WHERE topic = 'user' AND stream = :'carol';
SELECT count(*) AS carol_login_session FROM birdwatch.login_sessions WHERE user_id = :'carol';
SELECT count(*) > 0 AS alice_logins_kept FROM eventstore.events
 WHERE topic = 'user' AND stream = :'alice';
-- Alice's data: her profile, her ticks, the ratings she gave and got (the
-- old 1.0 rating of her owl upcast), the scores of her images, her emails.
SELECT d->'user'->>'email' AS email, d->'user'->>'display_name' AS name,
       jsonb_array_length(d->'ticks') AS ticks,
       jsonb_array_length(d->'ratings_given') AS given,
       jsonb_array_length(d->'ratings_received') AS received,
       (SELECT bool_and(r->>'version' = '2.0') FROM jsonb_array_elements(d->'ratings_received') r) AS received_as_2_0,
       jsonb_array_length(d->'scores_of_their_images') AS scores,
       jsonb_array_length(d->'notifications') AS notifications,
       d->'emails_pending' AS pending
  FROM birdwatch.export_user_data(:'alice') AS d;
SELECT birdwatch.export_user_data(NULL);
SELECT refusal(format('SELECT birdwatch.export_user_data(%L)', :'carol')) LIKE '42704 user % does not exist'
    AS forgotten_user_refused;

------------------------------------------------------------------------------
-- The login's user agent: personal data, stored encrypted per user and
-- shredded when the user is forgotten
------------------------------------------------------------------------------
SELECT user_id AS dave, token AS dave_token
  FROM birdwatch.register_user('dave@example.org', 'Dave') \gset
SELECT birdwatch.login(:'dave_token', 'Mozilla/5.0 (X11; Linux) DaveBrowser/1.0') = :'dave' AS logged_in;
SELECT birdwatch.login(:'dave_token', repeat('x', 513));
SELECT envelope->>'version' AS version,
       envelope #> '{data,client,user_agent}' ? 'protected' AS stored_encrypted,
       position('DaveBrowser' IN envelope::text) = 0 AS no_plain_text
  FROM eventstore.stored_events WHERE topic = 'user' AND stream = :'dave';
SELECT (eventstore.unprotect(e)).envelope #>> '{data,client,user_agent}' AS decrypted_by_the_owner
  FROM eventstore.read('user', 0, 10000) e WHERE e.stream = :'dave';
SELECT birdwatch.forget_me(:'dave_token') IS NOT NULL AS forgotten;
CALL run_all();
SELECT count(*) AS dave_keys FROM eventstore.subject_keys WHERE subject = :'dave';
SELECT count(*) AS dave_login_events FROM eventstore.events WHERE topic = 'user' AND stream = :'dave';
