-- Crypto-shredding: protect_fields, appends encrypting personal fields per
-- subject, unprotect for members of eventstore_decrypt, forget_subject
-- destroying the key (the ciphertext stays, the plain value is gone).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
DROP EXTENSION IF EXISTS pgcrypto;
CREATE EXTENSION eventstore;
DROP SCHEMA IF EXISTS test_protect CASCADE;
CREATE SCHEMA test_protect;
SET search_path = test_protect, public;
DROP ROLE IF EXISTS es_protect_writer;
DROP ROLE IF EXISTS es_protect_reader;
DROP ROLE IF EXISTS es_protect_decrypt;
DROP ROLE IF EXISTS es_protect_admin;
DROP ROLE IF EXISTS es_protect_consumer;
CREATE ROLE es_protect_writer IN ROLE eventstore_writer;
CREATE ROLE es_protect_reader IN ROLE eventstore_reader;
CREATE ROLE es_protect_decrypt IN ROLE eventstore_reader, eventstore_decrypt;
CREATE ROLE es_protect_admin IN ROLE eventstore_admin;
GRANT USAGE ON SCHEMA test_protect TO PUBLIC;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

-- A login event of user u with a user agent and an IP address.
CREATE FUNCTION ev(n int, u text, agent text DEFAULT 'Mozilla/5.0 (X11)', ip text DEFAULT '192.0.2.7')
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'id', ('c0000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid,
        'type', 'login', 'version', '1.0',
        'data', jsonb_build_object('user', jsonb_build_object('id', u),
                                   'client', jsonb_build_object('user_agent', agent, 'ip', ip),
                                   'n', n),
        'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z'))
$$;
CREATE FUNCTION stored(n int) RETURNS jsonb LANGUAGE sql AS $$
    SELECT e.data FROM eventstore.events e
     WHERE e.id = ('c0000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid
$$;
CREATE FUNCTION eid(n int) RETURNS uuid LANGUAGE sql AS $$
    SELECT ('c0000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid
$$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA test_protect TO PUBLIC;

SELECT eventstore.create_topic('login');
SELECT eventstore.create_topic('plain');

-- protect_fields: argument errors
SELECT eventstore.protect_fields('nope', 'user.id', '{client.ip}');
SELECT eventstore.protect_fields('login', 'user.ID', '{client.ip}');
SELECT eventstore.protect_fields('login', '', '{client.ip}');
SELECT eventstore.protect_fields('login', 'user.id', '{}');
SELECT eventstore.protect_fields('login', 'user.id', NULL);
SELECT eventstore.protect_fields('login', 'user.id', '{client..ip}');
SELECT eventstore.protect_fields('login', 'user.id', '{client.ip, NULL}');
SELECT eventstore.protect_fields('login', 'user.id', '{user}');
SELECT eventstore.protect_fields('login', 'user.id', '{client, client.ip}');
SELECT eventstore.protect_fields('login', 'user.id',
    (SELECT array_agg('f' || i) FROM generate_series(1, 17) i));
-- pgcrypto is needed, and not required by CREATE EXTENSION eventstore
SELECT eventstore.protect_fields('login', 'user.id', '{client.user_agent, client.ip}');
CREATE EXTENSION pgcrypto;
-- only an admin may protect
SET ROLE es_protect_writer;
SELECT eventstore.protect_fields('login', 'user.id', '{client.user_agent}');
RESET ROLE;
SET ROLE es_protect_admin;
SELECT eventstore.protect_fields('login', 'user.id', '{client.user_agent}');
RESET ROLE;
-- paths only grow; the subject path cannot change
SELECT eventstore.protect_fields('login', 'user.id', '{client.ip}');
SELECT eventstore.protect_fields('login', 'user.name', '{client.ip}');
SELECT topic, subject_path, paths FROM eventstore.protections;

-- append: the personal fields are stored encrypted
SET ROLE es_protect_writer;
SELECT eventstore.append('login', ev(1, 'alice')) AS alice_1;
SELECT eventstore.append('login', ev(2, 'bob', 'Mozilla/5.0 (Mac)', '198.51.100.2')) AS bob_2;
SELECT eventstore.append_batch('login', ARRAY[ev(3, 'alice', 'curl/8.0'), ev(4, 'carol')]) AS batch;
RESET ROLE;
SELECT position('Mozilla' IN data::text) = 0 AS no_agent,
       position('192.0.2.7' IN data::text) = 0 AS no_ip,
       data->'user'->>'id' AS subject, data->'n' AS n,
       jsonb_typeof(data->'client'->'user_agent'->'protected') AS agent_cipher,
       jsonb_typeof(data->'client'->'ip'->'protected') AS ip_cipher,
       data->'client'->'ip' ? 'key' AS has_key_id
  FROM eventstore.events WHERE topic = 'login' ORDER BY position;
-- each field of each event has its own IV: the same plain value encrypts differently
SELECT stored(1)->'client'->'ip'->>'protected' <> stored(4)->'client'->'ip'->>'protected' AS differs_across_events;
SELECT count(*) AS keys FROM eventstore.subject_keys;

-- a retry of the same event is an idempotent duplicate: same position, no 23505
SET ROLE es_protect_writer;
SELECT eventstore.append('login', ev(1, 'alice')) AS alice_1_again;
SELECT eventstore.append_batch('login', ARRAY[ev(3, 'alice', 'curl/8.0'), ev(4, 'carol')]) AS batch_again;
-- the same id with another personal value is still a conflict
SELECT eventstore.append('login', ev(1, 'alice', 'Other/1.0'));
-- an event of a protected topic must name its subject
SELECT eventstore.append('login', ev(5, NULL));
SELECT eventstore.append('login', ev(5, ''));
SELECT eventstore.append_batch('login', ARRAY[ev(6, 'dave'), ev(5, NULL)]);
-- a missing personal field is simply not there; JSON null stays null
SELECT eventstore.append('login', ev(7, 'dave') #- '{data,client,ip}' #- '{data,client,user_agent}') AS dave_7;
SELECT eventstore.append('login', jsonb_set(ev(8, 'dave'), '{data,client,ip}', 'null')) AS dave_8;
RESET ROLE;
SELECT n, stored(n)->'client' ? 'ip' AS has_ip, jsonb_typeof(stored(n)->'client'->'ip') AS ip
  FROM (VALUES (7), (8)) v(n);
SELECT count(*) AS events FROM eventstore.events WHERE topic = 'login';

-- an unprotected topic stores what it is given
SET ROLE es_protect_writer;
SELECT eventstore.append('plain', ev(20, 'alice')) AS plain_20;
RESET ROLE;
SELECT stored(20)->'client'->>'user_agent' AS plain_agent;

-- unprotect: members of eventstore_decrypt see plain values
SET ROLE es_protect_decrypt;
SELECT (eventstore.unprotect(e)).envelope->'data' AS data
  FROM eventstore.read('login') e ORDER BY position;
SELECT (eventstore.unprotect(e)).envelope = e.envelope AS unchanged_plain
  FROM eventstore.read('plain') e;
RESET ROLE;
-- readers without it get the ciphertext
SET ROLE es_protect_reader;
SELECT (eventstore.unprotect(e)).envelope = e.envelope AS unchanged,
       position('Mozilla' IN (eventstore.unprotect(e)).envelope::text) = 0 AS no_agent
  FROM eventstore.read('login') e ORDER BY position;
RESET ROLE;

-- forget_subject: the key row goes, the ciphertext stays, the fields read as null
CREATE TABLE before AS SELECT id, data FROM eventstore.events;
SET ROLE es_protect_writer;
SELECT eventstore.forget_subject('alice');
RESET ROLE;
SET ROLE es_protect_admin;
SELECT eventstore.forget_subject('alice') AS forgotten;
SELECT eventstore.forget_subject('alice') AS forgotten_again;
SELECT eventstore.forget_subject(NULL);
RESET ROLE;
SELECT count(*) AS alice_keys FROM eventstore.subject_keys WHERE subject = 'alice';
SELECT count(*) AS changed_rows
  FROM eventstore.events e JOIN before b USING (id) WHERE e.data IS DISTINCT FROM b.data;
SET ROLE es_protect_decrypt;
SELECT e.position, u.envelope->'data' AS data, u.envelope->'metadata'->'shredded' AS shredded
  FROM eventstore.read('login') e, eventstore.unprotect(e) u ORDER BY e.position;
RESET ROLE;
SET ROLE es_protect_reader;
SELECT e.position, jsonb_typeof(u.envelope->'data'->'client'->'ip') AS ip,
       u.envelope->'data'->'client'->'ip' ? 'protected' AS ip_cipher,
       u.envelope->'metadata'->'shredded' AS shredded
  FROM eventstore.read('login') e, eventstore.unprotect(e) u
 WHERE e.id IN (eid(1), eid(2)) ORDER BY e.position;
RESET ROLE;
-- the plain value cannot be recovered from the stored row by anyone: even
-- the owner, trying every key left, gets no plain value out of alice's
-- ciphertext (bob's decrypts, as a check of the attempt itself)
CREATE FUNCTION recover(n int) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    k record;
    plain text;
    found text[] := '{}';
BEGIN
    FOR k IN SELECT * FROM eventstore.subject_keys LOOP
        BEGIN
            plain := convert_from(eventstore.crypt_field(false, k.key, eid(n), 'client.ip',
                                  decode(stored(n)->'client'->'ip'->>'protected', 'base64')), 'UTF8');
            IF plain ~ '^"[0-9.]+"$' THEN
                found := found || plain;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            NULL;  -- a wrong key: bad padding or not UTF-8
        END;
    END LOOP;
    RETURN found;
END
$$;
SELECT recover(1) AS alice_1, recover(3) AS alice_3, recover(2) AS bob_2;

-- a new event of the forgotten subject gets a new key; the old events stay shredded
SET ROLE es_protect_writer;
SELECT eventstore.append('login', ev(9, 'alice', 'Mozilla/6.0')) AS alice_9;
-- a retry of an old event of a forgotten subject encrypts under the new key,
-- so it differs from the stored event: 23505 (documented)
SELECT eventstore.append('login', ev(1, 'alice'));
RESET ROLE;
SELECT count(*) AS alice_keys FROM eventstore.subject_keys WHERE subject = 'alice';
SET ROLE es_protect_decrypt;
SELECT e.position, u.envelope->'data'->'client' AS client, u.envelope->'metadata'->'shredded' AS shredded
  FROM eventstore.read('login') e, eventstore.unprotect(e) u
 WHERE e.envelope->'data'->'user'->>'id' = 'alice' ORDER BY e.position;
RESET ROLE;

-- a role granted read on the topic may unprotect it; decrypting still needs eventstore_decrypt
CREATE ROLE es_protect_consumer;
SELECT eventstore.grant_topic('login', 'read', 'es_protect_consumer');
CREATE FUNCTION as_event(n int) RETURNS eventstore.event LANGUAGE sql AS $$
    SELECT e.position, e.id, e.topic, e.stream, e.stream_version,
           jsonb_build_object('id', e.id, 'type', e.type, 'version', '1.0',
                              'data', e.data, 'metadata', e.metadata), e.recorded_at
      FROM eventstore.events e WHERE e.id = eid(n)
$$;
GRANT EXECUTE ON FUNCTION as_event(int) TO PUBLIC;
CREATE TABLE login_events AS SELECT as_event(2) AS e;
GRANT SELECT ON login_events TO PUBLIC;
SET ROLE es_protect_consumer;
SELECT (eventstore.unprotect(l.e)).envelope->'data'->'client'->'ip' ? 'protected' AS still_cipher
  FROM login_events l;
RESET ROLE;
GRANT eventstore_decrypt TO es_protect_consumer;
SET ROLE es_protect_consumer;
SELECT (eventstore.unprotect(l.e)).envelope->'data'->'client'->>'ip' AS ip FROM login_events l;
-- but not the same event claiming a topic it may not read
SELECT eventstore.unprotect(ROW((l.e).position, (l.e).id, 'plain', (l.e).stream, (l.e).stream_version,
                                (l.e).envelope, (l.e).recorded_at)::eventstore.event)
  FROM login_events l;
RESET ROLE;
-- writers may not call it
SET ROLE es_protect_writer;
SELECT eventstore.unprotect(l.e) FROM login_events l;
RESET ROLE;
SELECT eventstore.revoke_topic('login', 'read', 'es_protect_consumer');

-- protecting a topic this backend has cached as unprotected takes effect at
-- once; events stored before stay as they are
SET ROLE es_protect_writer;
SELECT eventstore.append('plain', ev(22, 'frank')) AS plain_22;
RESET ROLE;
SELECT eventstore.protect_fields('plain', 'user.id', '{client.ip}');
SET ROLE es_protect_writer;
SELECT eventstore.append('plain', ev(23, 'frank')) AS plain_23;
RESET ROLE;
SELECT n, jsonb_typeof(stored(n)->'client'->'ip') AS ip, stored(n)->'client'->>'user_agent' AS agent
  FROM (VALUES (20), (22), (23)) v(n);

-- without pgcrypto, appends to a protected topic fail rather than store plain values
SET client_min_messages = warning;
DROP EXTENSION pgcrypto;
RESET client_min_messages;
SET ROLE es_protect_writer;
SELECT eventstore.append('login', ev(10, 'erin'));
RESET ROLE;
-- other topics do not need it
SELECT eventstore.create_topic('other');
SET ROLE es_protect_writer;
SELECT eventstore.append('other', ev(21, 'erin')) AS other_21;
RESET ROLE;

SET client_min_messages = warning;
DROP SCHEMA test_protect CASCADE;
DROP EXTENSION eventstore CASCADE;
DROP ROLE es_protect_writer;
DROP ROLE es_protect_reader;
DROP ROLE es_protect_decrypt;
DROP ROLE es_protect_admin;
DROP ROLE es_protect_consumer;
