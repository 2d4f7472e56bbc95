-- test/soak.d/setup.sql: a fresh eventstore and birdwatch for the soak,
-- and what the soak adds to them.  Run by test/soak through psql with
-- -v watchers=N.
--
--   soak_client    login role of the pgbench clients: a birdwatch client
--                  (birdwatch_app) that may also append to the topic soak
--   soak_handler   the role the in-database consumer soak_ledger runs as
--   soak_daemon    login role of eventstore-worker: sends the Notifier's
--                  email (birdwatch_notifier) and runs soak_ledger too
--                  (run_consumer, competing with the dispatcher workers)
--
-- soak_ledger's handler counts every delivery of an event in
-- soak.handled.times, so an event handled twice shows as times = 2.  It
-- refuses the "poison" events the clients append on purpose (data.poison),
-- which are parked after 3 attempts: the only parked events the soak
-- expects.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

DROP SCHEMA IF EXISTS soak CASCADE;
DROP EXTENSION IF EXISTS birdwatch CASCADE;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION birdwatch CASCADE;

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'soak_client') THEN
        CREATE ROLE soak_client LOGIN PASSWORD 'soak-client-secret';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'soak_daemon') THEN
        CREATE ROLE soak_daemon LOGIN PASSWORD 'soak-daemon-secret';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'soak_handler') THEN
        CREATE ROLE soak_handler NOLOGIN;
    END IF;
END
$roles$;
GRANT birdwatch_app TO soak_client;
GRANT birdwatch_notifier, soak_handler TO soak_daemon;
-- run_consumer is eventstore_admin's; the daemon needs that function alone
-- (it checks that the caller is a member of the consumer's run_as).
GRANT EXECUTE ON FUNCTION eventstore.run_consumer(text, integer) TO soak_daemon;

CREATE SCHEMA soak;
GRANT USAGE ON SCHEMA soak TO soak_client, soak_handler;

SELECT eventstore.create_topic('soak');
SELECT eventstore.grant_topic('soak', 'append', 'soak_client');
SELECT eventstore.grant_topic('soak', 'read', 'soak_handler');

-- The watchers the clients act as; each has an address, so that every
-- rating of another watcher's image mails its owner.
CREATE TABLE soak.watchers (
    n       integer PRIMARY KEY,
    user_id uuid NOT NULL,
    token   text NOT NULL
);
INSERT INTO soak.watchers
SELECT g, r.user_id, r.token
  FROM generate_series(1, :watchers) g,
       LATERAL birdwatch.register_user(format('watcher%s@soak.test', g), format('Watcher %s', g)) r;
GRANT SELECT ON soak.watchers TO soak_client;

-- One row per event soak_ledger's handler committed; times counts them.
CREATE TABLE soak.handled (
    event_id uuid PRIMARY KEY,
    times    integer NOT NULL
);
GRANT SELECT, INSERT, UPDATE ON soak.handled TO soak_handler;

CREATE FUNCTION soak.record(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF (e.envelope #>> '{data,poison}')::boolean THEN
        RAISE EXCEPTION 'poison event % refused', e.id;
    END IF;
    INSERT INTO soak.handled AS h VALUES (e.id, 1)
        ON CONFLICT (event_id) DO UPDATE SET times = h.times + 1;
END
$$;
REVOKE ALL ON FUNCTION soak.record(eventstore.event) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION soak.record(eventstore.event) TO soak_handler;
-- Split into members (4 unless SOAK_MEMBERS says otherwise): the dispatcher
-- workers run different members' batches at the same time.
SELECT eventstore.create_consumer('soak_ledger', ARRAY['soak'], 'soak.record(eventstore.event)',
                                  batch_size => 50, max_attempts => 3, run_as => 'soak_handler',
                                  members => :members);

-- What the clients saw acknowledged (loaded from their files at the end):
-- kind append, tick or rate; the event id; key: the position append
-- returned, or the number in the image URL of a tick or rate.
CREATE TABLE soak.acked (
    kind text NOT NULL,
    id   uuid NOT NULL,
    key  text NOT NULL
);
-- The messages the SMTP server received: the id in their Message-ID
-- (NULL when it is not <uuid@...>), one row per message file.
CREATE TABLE soak.mails (
    file       text NOT NULL,
    message_id uuid
);

-- Quick retries of the email after the SMTP outage.
ALTER DATABASE :"DBNAME" SET birdwatch.email_retry_delay = '100ms';
ALTER DATABASE :"DBNAME" SET birdwatch.email_lease = '30s';
