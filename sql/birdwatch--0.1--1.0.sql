-- birdwatch 0.1 -> 1.0: the first release.
--
-- 0.1 is the development series as it stood before the release work
-- (issue 6); this script holds what that work changed in the SQL objects.
-- A fresh CREATE EXTENSION birdwatch runs birdwatch--0.1.sql and then this script,
-- so every installation, new or upgraded, goes through the same steps.
-- From 1.0 on, every change to the SQL ships as a further upgrade script
-- (1.0--1.1 and so on), never as an edit of an earlier one.

\echo Use "ALTER EXTENSION birdwatch UPDATE TO '1.0'" to load this file. \quit

------------------------------------------------------------------------------
-- Limits and bad input (issue 6): resolve_token refuses a NULL or empty
-- token as login does (28000 authentication failed), instead of failing on
-- the NOT NULL constraint of birdwatch.tokens.hash (23502).
-- test/sql/limits.sql calls every function with a NULL in each argument.
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION resolve_token(token text) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h   bytea := birdwatch.token_hash(token);
    uid uuid;
BEGIN
    IF token IS NULL OR token = '' THEN
        RAISE EXCEPTION 'authentication failed'
            USING ERRCODE = 'invalid_authorization_specification',
                  DETAIL = format('Argument "token" is %s.', CASE WHEN token IS NULL THEN 'NULL' ELSE 'empty' END);
    END IF;
    SELECT t.user_id INTO uid FROM birdwatch.tokens t WHERE t.hash = h;
    IF FOUND THEN
        RETURN uid;
    END IF;
    INSERT INTO birdwatch.users DEFAULT VALUES RETURNING id INTO uid;
    INSERT INTO birdwatch.tokens (hash, user_id) VALUES (h, uid)
        ON CONFLICT (hash) DO NOTHING;
    IF NOT FOUND THEN
        -- A concurrent first use of the same token won.
        DELETE FROM birdwatch.users WHERE id = uid;
        SELECT t.user_id INTO uid FROM birdwatch.tokens t WHERE t.hash = h;
    END IF;
    RETURN uid;
END
$$;
-- End of: limits and bad input.

------------------------------------------------------------------------------
-- Privilege audit (issue 6, item 3; test/pgtap/privilege_audit.sql): the
-- rate upcaster runs as birdwatch_tick_api, the owner of its function.
--
-- eventstore runs an upcaster as the role that registered it.  0.1
-- registered upcast_rate_1_to_2 from this script, so as the superuser who
-- ran CREATE EXTENSION, while the function belongs to birdwatch_tick_api.
-- An owner may ALTER its function: a member of birdwatch_tick_api that can
-- create objects in any schema (a database owner can in public) could make
-- it SECURITY INVOKER with a search_path reaching an operator of its own,
-- which every consumer of rate (and every reader calling upcast) then ran
-- as that superuser.  Registered as its owner, the function runs with no
-- more than the privileges its owner has anyway.  Registering an upcaster
-- needs the topic's read privilege, and so does every call.
------------------------------------------------------------------------------

SELECT eventstore.grant_topic('rate', 'read', 'birdwatch_tick_api');
UPDATE eventstore.upcasters
   SET run_as = 'birdwatch_tick_api'
 WHERE topic = 'rate' AND from_major = 1 AND fn = 'birdwatch.upcast_rate_1_to_2(jsonb)';

------------------------------------------------------------------------------
-- pg_dump: a restore keeps the score secret.
--
-- The install script stores a random secret, and a restore runs the install
-- script before it copies the dumped secret in, which then collided with it:
-- the restored database scored with a new secret.  The table holds one
-- secret, so inserting one now replaces it (test/shell/dump_restore.sh).
------------------------------------------------------------------------------

CREATE FUNCTION replace_score_secret() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM birdwatch.score_secret;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION replace_score_secret() IS
    'trigger: a new score secret replaces the one stored (a restore copies in the dumped one)';
REVOKE ALL ON FUNCTION replace_score_secret() FROM PUBLIC;

CREATE TRIGGER one_score_secret BEFORE INSERT ON score_secret
    FOR EACH ROW EXECUTE FUNCTION replace_score_secret();
-- End of: pg_dump.

------------------------------------------------------------------------------
-- The outbox lease is a setting: birdwatch.email_lease (default 5min).
--
-- claim_emails leased each email it handed out for a fixed 5 minutes, so the
-- emails of a daemon killed mid-batch, or whose "sent" mark a server crash
-- lost, waited that long (test/soak measured it).  A deployment whose
-- daemons send a batch in seconds can lease for less: the lease must only
-- outlast one batch (max emails x the SMTP timeout), or an email goes out
-- twice while the first daemon still sends it.
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION claim_emails(max integer DEFAULT 10)
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
-- End of: outbox lease.
