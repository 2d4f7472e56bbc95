-- test/pgtap/injection.sql: names cannot inject SQL (part of the privilege
-- audit of the 1.0 release, with privilege_audit.sql).
--
-- Every function that takes a topic, consumer, stream, subject or role name
-- is called with names made of quotes, semicolons, comment markers and
-- dollar quotes ('); DROP TABLE ...; --), a backslash, a newline, unicode
-- (a combining mark, a right-to-left override, an emoji), an empty string,
-- a name one character too long and a very long one.  Each call either
-- refuses with the documented SQLSTATE (README "Error codes": 42602 for a
-- topic or consumer name that is not ^[a-z][a-z0-9_]*$ of at most 63
-- characters, 42704 for a topic or consumer that does not exist, 22023 for
-- a stream name that is empty or over 1024 bytes) or takes the name as a
-- plain value; a canary table that every payload tries to drop survives,
-- and no payload leaves an object behind.  Role names go through
-- grant_topic's dynamic GRANT: a role named like a payload is granted and
-- revoked as itself.  Birdwatch's client calls take emails, display names,
-- tokens and image URLs with quotes and semicolons as plain values.
--
-- The calls run as pa_inj, an eventstore_admin, writer and reader.  One
-- transaction, rolled back.

BEGIN;
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS birdwatch CASCADE;
RESET client_min_messages;

CREATE TABLE public.pa_canary (x integer);
INSERT INTO public.pa_canary VALUES (1);
CREATE ROLE pa_inj IN ROLE eventstore_admin, eventstore_writer, eventstore_reader;
GRANT CREATE ON SCHEMA public TO pa_inj;      -- for its upcaster function
CREATE ROLE pa_inj_app IN ROLE birdwatch_app, birdwatch_admin_api;
CREATE ROLE "pa_inj""; DROP TABLE public.pa_canary; --";
CREATE ROLE "pa_inj'); DROP TABLE public.pa_canary; --";

-- The names.  valid: a topic or consumer name by the rules.
CREATE TEMP TABLE pa_names (n serial, label text, name text, valid boolean);
INSERT INTO pa_names (label, name, valid) VALUES
    ('single quote payload', 'x''); DROP TABLE public.pa_canary; --', false),
    ('double quote payload', 'x"; DROP TABLE public.pa_canary; --', false),
    ('dollar quote payload', 'x$$; DROP TABLE public.pa_canary; $$', false),
    ('format payload', 'x%I%L%s''); DROP TABLE public.pa_canary; --', false),
    ('backslash', E'x\\''; DROP TABLE public.pa_canary; --', false),
    ('newline after a valid name', E'tick\n', false),
    ('upper case', 'TICK', false),
    ('combining diaeresis', E'ti\u0308ck', false),
    ('right-to-left override', E'tick\u202Eevil', false),
    ('emoji', E'tick\U0001F426', false),
    ('empty string', '', false),
    ('64 characters', 'p' || repeat('a', 63), false),
    ('10000 characters', repeat('a', 10000), false),
    ('63 characters', 'p' || repeat('b', 62), true);
-- The calls; %N is the name, quoted as a literal.  refused: the SQLSTATE
-- for a name that is not valid; for a valid one, what the call gives then.
CREATE TEMP TABLE pa_calls (n serial, label text, q text, refused text, accepted text);
INSERT INTO pa_calls (label, q, refused, accepted) VALUES
    ('create_topic', 'SELECT eventstore.create_topic(%N)', '42602', 'ok'),
    ('append', $$SELECT eventstore.append(%N, '{"id": "7d1c0a52-0000-4000-8000-000000000e01", "type": "new", "version": "1.0", "data": {}, "metadata": {"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}}')$$, '42704', 'ok'),
    ('read', 'SELECT * FROM eventstore.read(%N)', '42704', 'ok'),
    ('read_stream', $$SELECT * FROM eventstore.read_stream(%N, 's')$$, '42704', 'ok'),
    ('set_retention', $$SELECT eventstore.set_retention(%N, '1 day')$$, '42704', 'ok'),
    ('set_topic_version', $$SELECT eventstore.set_topic_version(%N, '1.1')$$, '42704', 'ok'),
    ('grant_topic', $$SELECT eventstore.grant_topic(%N, 'read', 'pa_inj')$$, '42704', 'ok'),
    ('revoke_topic', $$SELECT eventstore.revoke_topic(%N, 'read', 'pa_inj')$$, '42704', 'ok'),
    ('erase_stream', $$SELECT eventstore.erase_stream(%N, 's')$$, '42704', 'ok'),
    ('protect_fields', $$SELECT eventstore.protect_fields(%N, 'user.id', ARRAY['email'])$$, '42704', 'ok'),
    ('create_upcaster', $$SELECT eventstore.create_upcaster(%N, 0, 1, 'public.pa_inj_upcaster(jsonb)')$$, '42704', 'ok'),
    ('create_consumer of the topic', $$SELECT eventstore.create_consumer('pa_inj_c', ARRAY[%N])$$, '42704', 'ok'),
    ('create_consumer', $$SELECT eventstore.create_consumer(%N, ARRAY['tick'])$$, '42602', 'ok'),
    ('poll', 'SELECT * FROM eventstore.poll(%N)', '42602', 'ok'),
    ('poll of a member', 'SELECT * FROM eventstore.poll(%N, 100, 0)', '42602', 'ok'),
    ('ack', 'SELECT eventstore.ack(%N, 1)', '42602', '22023'),
    ('nack', $$SELECT eventstore.nack(%N, 1, 'x')$$, '42602', '22023'),
    ('reset_consumer', 'SELECT eventstore.reset_consumer(%N, 0)', '42602', 'ok'),
    ('set_consumer_members', 'SELECT eventstore.set_consumer_members(%N, 2)', '42602', 'ok'),
    ('replay_parked', $$SELECT eventstore.replay_parked(%N, '7d1c0a52-0000-4000-8000-000000000e01')$$, '42602', '42704'),
    ('run_consumer', 'SELECT eventstore.run_consumer(%N)', '42704', '42809'),
    ('drop_consumer', 'SELECT eventstore.drop_consumer(%N)', '42602', 'ok');

SELECT plan(12 + (SELECT count(*)::integer FROM pa_names) * ((SELECT count(*)::integer FROM pa_calls) + 3));

-- Runs q as role r: 'ok' or the SQLSTATE.
CREATE FUNCTION pg_temp.pa_try(r text, q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    result text := 'ok';
BEGIN
    BEGIN
        PERFORM set_config('role', r, true);
        EXECUTE q;
        PERFORM set_config('role', 'none', true);
    EXCEPTION WHEN others THEN
        result := SQLSTATE;
    END;
    RETURN result;
END
$$;

SET LOCAL ROLE pa_inj;
CREATE FUNCTION public.pa_inj_upcaster(envelope jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT envelope $$;
RESET ROLE;
SELECT eventstore.create_topic('pa_inj_streams');
GRANT SELECT ON pa_names TO pa_inj;

-- Topic and consumer names, call by call (the valid name last: the calls
-- made for it see the topic and consumer it created).
SELECT is(pg_temp.pa_try('pa_inj', replace(c.q, '%N', quote_literal(nm.name))),
          CASE WHEN nm.valid THEN c.accepted ELSE c.refused END,
          format('%s with a %s: %s', c.label, nm.label,
                 CASE WHEN nm.valid THEN 'accepted' ELSE 'refused with ' || c.refused END))
  FROM pa_names nm CROSS JOIN pa_calls c
 ORDER BY nm.valid, nm.n, c.n;

-- Stream names: plain values.
SELECT is(pg_temp.pa_try('pa_inj', format($$SELECT eventstore.append('pa_inj_streams', jsonb_build_object(
              'id', %L::uuid, 'type', 'new', 'version', '1.0', 'data', '{}'::jsonb,
              'metadata', '{"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}'::jsonb), %L)$$,
              eventstore.derived_id('7d1c0a52-0000-4000-8000-000000000e02', nm.n::text), nm.name)),
          CASE WHEN nm.name = '' OR octet_length(nm.name) > 1024 THEN '22023' ELSE 'ok' END,
          format('append to a stream named with a %s: %s', nm.label,
                 CASE WHEN nm.name = '' OR octet_length(nm.name) > 1024 THEN 'refused with 22023'
                      ELSE 'stored as a plain name' END))
  FROM pa_names nm ORDER BY nm.n;
SET LOCAL ROLE pa_inj;
SELECT is((SELECT count(*)::integer FROM eventstore.read_stream('pa_inj_streams', nm.name)),
          CASE WHEN nm.name = '' OR octet_length(nm.name) > 1024 THEN 0 ELSE 1 END,
          format('read_stream of the stream named with a %s finds its one event', nm.label))
  FROM pa_names nm ORDER BY nm.n;
SELECT is(eventstore.erase_stream('pa_inj_streams', nm.name),
          CASE WHEN nm.name = '' OR octet_length(nm.name) > 1024 THEN 0::bigint ELSE 1::bigint END,
          format('erase_stream of the stream named with a %s removes its one event', nm.label))
  FROM pa_names nm ORDER BY nm.n;
RESET ROLE;

-- Role names and subjects.
SET LOCAL ROLE pa_inj;
SELECT lives_ok($$SELECT eventstore.grant_topic('pa_inj_streams', 'read', '"pa_inj""; DROP TABLE public.pa_canary; --"')$$,
                'grant_topic to a role named with a double quote payload');
SELECT lives_ok($$SELECT eventstore.grant_topic('pa_inj_streams', 'append', '"pa_inj''); DROP TABLE public.pa_canary; --"')$$,
                'grant_topic to a role named with a single quote payload');
RESET ROLE;
SELECT ok(has_function_privilege('pa_inj"; DROP TABLE public.pa_canary; --', 'eventstore.poll(text,integer,integer)', 'EXECUTE')
          AND has_function_privilege('pa_inj''); DROP TABLE public.pa_canary; --', 'eventstore.append(text,jsonb,text,bigint)', 'EXECUTE'),
          'the roles named like payloads got their functions, as themselves');
SET LOCAL ROLE pa_inj;
SELECT lives_ok($$SELECT eventstore.revoke_topic('pa_inj_streams', 'read', '"pa_inj""; DROP TABLE public.pa_canary; --"');
                  SELECT eventstore.revoke_topic('pa_inj_streams', 'append', '"pa_inj''); DROP TABLE public.pa_canary; --"')$$,
                'revoke_topic from the roles named like payloads');
SELECT is(eventstore.forget_subject('x''); DROP TABLE public.pa_canary; --'), false,
          'forget_subject takes a payload as a plain subject (that has no key)');
RESET ROLE;

-- Birdwatch's client calls take such text as plain values.
SET LOCAL ROLE pa_inj_app;
SELECT lives_ok($$SELECT birdwatch.register_user('o''brien+pa--x@example.com', 'O''Brien"; DROP TABLE public.pa_canary; -- 🐦')$$,
                'register_user with a quote in the email and quotes, a semicolon and an emoji in the display name');
SELECT throws_ok($$SELECT birdwatch.register_user('rtl@example.com', E'evil\u202Ename')$$, '22023', 'invalid display name',
                 'register_user refuses a display name with a right-to-left override');
SELECT lives_ok($$SELECT birdwatch.tick('bw_''); DROP TABLE public.pa_canary; --', 'https://birds.example/a''b;c"d.jpg')$$,
                'tick with a token and an image URL holding quotes and a semicolon');
SELECT lives_ok($$SELECT birdwatch.rate('bw_"; DROP TABLE public.pa_canary; --', 'https://birds.example/a''b;c"d.jpg', 3)$$,
                'rate with such a token and image URL');
SELECT is((SELECT email || ' / ' || display_name FROM birdwatch.list_users(10000) WHERE email LIKE 'o''brien%'),
          'o''brien+pa--x@example.com / O''Brien"; DROP TABLE public.pa_canary; -- 🐦',
          'the email and display name are stored exactly as given');
RESET ROLE;

SELECT is((SELECT count(*)::integer FROM public.pa_canary), 1, 'the canary table survived every payload');
SELECT is_empty(
    $$SELECT c.oid::regclass::text FROM pg_class c
       WHERE c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace)
         AND c.relnamespace <> pg_my_temp_schema() AND c.relname ~ '[^a-z0-9_]'$$,
    'no payload created a relation (none has a name outside [a-z0-9_])'
);

SELECT * FROM finish();
ROLLBACK;
