-- test/pgtap/topic_grants.sql: per-topic privileges (grant_topic, revoke_topic).
--
-- Rules: members of eventstore_writer append to every topic and members of
-- eventstore_reader consume every topic.  eventstore.grant_topic(topic,
-- 'append' | 'read', role), which only eventstore_admin may call, gives one
-- role one privilege on one topic (at most 16 roles per privilege and
-- topic), with the functions that privilege needs: append, append_batch,
-- validate, is_valid and derived_id for 'append'; poll, ack, nack,
-- upcast(event), unprotect(event) and derived_id for 'read'; USAGE on the schema and its types
-- for both.  revoke_topic takes the privilege back, and the functions with
-- the role's last grant of it.  Appending to a topic without either right
-- is refused with 42501 'permission denied to append to topic "t"'; a
-- consumer whose role cannot read every one of its topics, or an upcaster
-- whose registrar cannot read its topic, is refused with 42501 'permission
-- denied to read topic "t"', when created and again on every poll, every
-- in-database batch and every upcaster call.  Superusers pass every check.
-- Members of a granted role hold its privileges.
--
-- Appends check the topic cache of the backend (extension/catalog.c), which
-- the UPDATE of eventstore.topics by grant_topic/revoke_topic invalidates:
-- checked here within one statement, one transaction, a rolled back
-- subtransaction, and (at the end) across transactions and sessions.
--
-- Everything happens in one transaction that is rolled back, including the
-- test roles, except the tests across transactions and sessions: they need
-- commits, so they run through dblink in a database of their own,
-- es_tg_db, with a role of their own, es_tg_x_app, both dropped at the end.
-- That database is set up first, before this transaction creates the
-- extension: its CREATE EXTENSION creates the eventstore roles if the
-- cluster has none yet, which it could not do while this transaction had
-- created them and not committed.

BEGIN;
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dblink;

-- es_tg_x1: the appender's session; es_tg_x2: the owner's (a superuser's)
-- session, which grants and revokes; es_tg_root: creates and drops the
-- database.  Timeouts turn an unexpected wait into an error, not a hang.
DO $setup$
DECLARE
    conn text := format('host=%s port=%s options=''-c lock_timeout=10s -c statement_timeout=60s''',
                        split_part(current_setting('unix_socket_directories'), ',', 1),
                        current_setting('port'));
BEGIN
    PERFORM dblink_connect('es_tg_root', conn || ' dbname=' || current_database());
    PERFORM dblink_exec('es_tg_root', 'DROP DATABASE IF EXISTS es_tg_db WITH (FORCE)');
    PERFORM dblink_exec('es_tg_root', 'DROP ROLE IF EXISTS es_tg_x_app');
    PERFORM dblink_exec('es_tg_root', 'CREATE DATABASE es_tg_db');
    PERFORM dblink_exec('es_tg_root', 'CREATE ROLE es_tg_x_app NOLOGIN');
    PERFORM dblink_connect('es_tg_x1', conn || ' dbname=es_tg_db');
    PERFORM dblink_connect('es_tg_x2', conn || ' dbname=es_tg_db');
    PERFORM dblink_exec('es_tg_x2', 'SET client_min_messages = warning');
    PERFORM dblink_exec('es_tg_x2', 'CREATE EXTENSION eventstore');
END
$setup$;

DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
RESET client_min_messages;

SELECT plan(162);

------------------------------------------------------------------------------
-- Helpers, roles and topics
------------------------------------------------------------------------------

-- Event number n, with an id of its own.
CREATE FUNCTION public.es_tg_event(n integer) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'id', '00000000-0000-4000-8000-' || lpad(n::text, 12, '0'),
        'type', 'new', 'version', '1.0', 'data', jsonb_build_object('n', n),
        'metadata', jsonb_build_object('source', 'test/topic_grants', 'time', '2024-01-01T00:00:00Z'))
$$;
-- The error sql raises, as {SQLSTATE, message, detail, hint}; NULL if none.
CREATE FUNCTION public.es_tg_error(sql text) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
    det text;
    hnt text;
BEGIN
    EXECUTE sql;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    RETURN ARRAY[st, msg, nullif(det, ''), nullif(hnt, '')];
END
$$;
-- The functions of eventstore a role may execute, sorted.
CREATE FUNCTION public.es_tg_functions(r regrole) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(p.proname::text ORDER BY p.proname::text), '{}')
      FROM pg_proc p
     WHERE p.pronamespace = 'eventstore'::regnamespace
       AND has_function_privilege(r, p.oid, 'EXECUTE')
$$;
-- The grantees of a topic, as text.
CREATE FUNCTION public.es_tg_grantees(topic text, privilege text) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT CASE privilege WHEN 'append' THEN t.appenders::text[] ELSE t.readers::text[] END
      FROM eventstore.topics t WHERE t.name = topic
$$;

-- Handler calls, by any role of this session.
CREATE TABLE public.es_tg_calls (event_id uuid, as_user name);
GRANT INSERT ON public.es_tg_calls TO PUBLIC;
CREATE FUNCTION public.es_tg_handler(e eventstore.event) RETURNS void
LANGUAGE sql AS $$ INSERT INTO public.es_tg_calls VALUES (e.id, current_user) $$;
-- An upcaster from 1 to 2.
CREATE FUNCTION public.es_tg_up(envelope jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT jsonb_set(envelope, '{version}', '"2.0"') $$;

CREATE ROLE es_tg_admin NOLOGIN IN ROLE eventstore_admin;
CREATE ROLE es_tg_writer NOLOGIN IN ROLE eventstore_writer;
CREATE ROLE es_tg_reader NOLOGIN IN ROLE eventstore_reader;
-- a login role with no eventstore role (PUBLIC's rights only)
CREATE ROLE es_tg_login LOGIN;
-- a service granted append on es_tg_a, and a member of it
CREATE ROLE es_tg_app NOLOGIN;
CREATE ROLE es_tg_app_member NOLOGIN IN ROLE es_tg_app;
-- a role whose functions come and go with its grants
CREATE ROLE es_tg_fn NOLOGIN;
-- a consumer's role, and a member of it
CREATE ROLE es_tg_svc NOLOGIN;
CREATE ROLE es_tg_svc_member NOLOGIN IN ROLE es_tg_svc;
-- an admin that registers an upcaster
CREATE ROLE es_tg_registrar NOLOGIN IN ROLE eventstore_admin;
-- names that must be quoted
CREATE ROLE "es_tg ""odd"" rôle" NOLOGIN;
CREATE ROLE "Es_Tg_Upper" NOLOGIN;
-- seventeen roles, one more than a topic may grant a privilege to
SELECT format('CREATE ROLE es_tg_g%s NOLOGIN', lpad(i::text, 2, '0')) FROM generate_series(1, 17) AS i \gexec

SELECT lives_ok(
    $$SELECT eventstore.create_topic(t) FROM unnest(ARRAY['es_tg_a', 'es_tg_b', 'es_tg_c']) AS t$$,
    'setup: the owner creates topics es_tg_a, es_tg_b and es_tg_c');
SELECT lives_ok($$SELECT eventstore.append('es_tg_a', public.es_tg_event(1))$$,
    'setup: the owner appends event 1 to es_tg_a');

------------------------------------------------------------------------------
-- Structure
------------------------------------------------------------------------------

SELECT has_function('eventstore', 'grant_topic', ARRAY['text', 'text', 'regrole'], 'grant_topic(text, text, regrole) exists');
SELECT has_function('eventstore', 'revoke_topic', ARRAY['text', 'text', 'regrole'], 'revoke_topic(text, text, regrole) exists');
SELECT function_returns('eventstore', f, ARRAY['text', 'text', 'regrole'], 'void', format('%s returns void', f))
  FROM unnest(ARRAY['grant_topic', 'revoke_topic']) AS f;
SELECT is(
    (SELECT array_agg(p.proname || ' ' || p.prosecdef || ' ' || coalesce(p.proconfig::text, 'NULL') ORDER BY p.proname)
       FROM pg_proc p
      WHERE p.oid IN ('eventstore.grant_topic(text,text,regrole)'::regprocedure,
                      'eventstore.revoke_topic(text,text,regrole)'::regprocedure)),
    ARRAY['grant_topic true {"search_path=pg_catalog, pg_temp"}',
          'revoke_topic true {"search_path=pg_catalog, pg_temp"}'],
    'grant_topic and revoke_topic are SECURITY DEFINER with search_path = pg_catalog, pg_temp'
);
SELECT col_type_is('eventstore', 'topics', c, 'regrole[]', format('topics.%s is regrole[]', c))
  FROM unnest(ARRAY['appenders', 'readers']) AS c;
SELECT col_not_null('eventstore', 'topics', c, format('topics.%s is NOT NULL', c))
  FROM unnest(ARRAY['appenders', 'readers']) AS c;
SELECT is(
    (SELECT array_agg(pg_get_constraintdef(oid) ORDER BY 1) FROM pg_constraint
      WHERE conrelid = 'eventstore.topics'::regclass AND contype = 'c'
        AND pg_get_constraintdef(oid) LIKE '%cardinality%'),
    ARRAY['CHECK ((cardinality(appenders) <= 16))', 'CHECK ((cardinality(erasers) <= 16))',
          'CHECK ((cardinality(readers) <= 16))'],
    'topics.appenders, erasers and readers hold at most 16 roles each (CHECK)'
);
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text || ' -> ' || r ORDER BY 1)
       FROM pg_proc p
       CROSS JOIN unnest(ARRAY['public', 'eventstore_writer', 'eventstore_reader', 'eventstore_admin']) AS r
      WHERE p.pronamespace = 'eventstore'::regnamespace
        AND p.proname IN ('check_topic_grant_args', 'topic_privilege_functions',
                          'unreadable_topic', 'check_topics_readable')
        AND has_function_privilege(r, p.oid, 'EXECUTE')),
    NULL,
    'the internal check_topic_grant_args, topic_privilege_functions, unreadable_topic and check_topics_readable '
    'are executable by none of the roles nor PUBLIC'
);
SELECT is(
    (SELECT array_agg(t.name || ' ' || t.appenders::text || ' ' || t.readers::text ORDER BY t.name) FROM eventstore.topics t),
    ARRAY['es_tg_a {} {}', 'es_tg_b {} {}', 'es_tg_c {} {}'],
    'a new topic grants nothing to anyone'
);

------------------------------------------------------------------------------
-- Only eventstore_admin may grant and revoke
------------------------------------------------------------------------------

SET LOCAL ROLE es_tg_writer;
SELECT throws_ok($$SELECT eventstore.grant_topic('es_tg_a', 'append', 'es_tg_writer')$$, '42501',
    'permission denied for function grant_topic', 'a writer cannot grant_topic');
SELECT throws_ok($$SELECT eventstore.revoke_topic('es_tg_a', 'append', 'es_tg_writer')$$, '42501',
    'permission denied for function revoke_topic', 'a writer cannot revoke_topic');
RESET ROLE;
SET LOCAL ROLE es_tg_reader;
SELECT throws_ok($$SELECT eventstore.grant_topic('es_tg_a', 'read', 'es_tg_reader')$$, '42501',
    'permission denied for function grant_topic', 'a reader cannot grant_topic');
SELECT throws_ok($$SELECT eventstore.revoke_topic('es_tg_a', 'read', 'es_tg_reader')$$, '42501',
    'permission denied for function revoke_topic', 'a reader cannot revoke_topic');
RESET ROLE;
SET SESSION AUTHORIZATION es_tg_login;
SELECT throws_ok($$SELECT eventstore.grant_topic('es_tg_a', 'append', 'es_tg_login')$$, '42501', NULL,
    'a login role with PUBLIC''s rights only cannot grant_topic');
SELECT throws_ok($$SELECT eventstore.revoke_topic('es_tg_a', 'append', 'es_tg_login')$$, '42501', NULL,
    'a login role with PUBLIC''s rights only cannot revoke_topic');
RESET SESSION AUTHORIZATION;
SELECT is(
    (SELECT array_agg(t.name || ' ' || t.appenders::text || ' ' || t.readers::text ORDER BY t.name) FROM eventstore.topics t),
    ARRAY['es_tg_a {} {}', 'es_tg_b {} {}', 'es_tg_c {} {}'],
    'the refused calls granted nothing'
);

------------------------------------------------------------------------------
-- Argument errors
------------------------------------------------------------------------------

SET LOCAL ROLE es_tg_admin;

SELECT is(public.es_tg_error($$SELECT eventstore.grant_topic('es_tg_a', NULL, 'es_tg_app')$$),
    ARRAY['22023', 'invalid topic privilege', 'Argument "privilege" is NULL; it must be ''append'', ''read'' or ''erase''.', NULL],
    'grant_topic with a NULL privilege: 22023, naming the argument');
SELECT is(public.es_tg_error($$SELECT eventstore.grant_topic('es_tg_a', 'write', 'es_tg_app')$$),
    ARRAY['22023', 'invalid topic privilege', 'Argument "privilege" is ''write''; it must be ''append'', ''read'' or ''erase''.', NULL],
    'grant_topic with an unknown privilege (''write''): 22023, quoting it');
SELECT throws_ok($$SELECT eventstore.grant_topic('es_tg_a', 'APPEND', 'es_tg_app')$$, '22023', 'invalid topic privilege',
    'grant_topic privileges are lower case: ''APPEND'' is unknown (22023)');
SELECT throws_ok($$SELECT eventstore.grant_topic('es_tg_a', 'append, read', 'es_tg_app')$$, '22023', 'invalid topic privilege',
    'grant_topic takes one privilege: ''append, read'' is unknown (22023)');
SELECT is(public.es_tg_error($$SELECT eventstore.grant_topic('es_tg_a', 'append', NULL)$$),
    ARRAY['22023', 'invalid topic grantee', 'Argument "grantee" must name a role.', NULL],
    'grant_topic with a NULL grantee: 22023');
SELECT throws_ok($$SELECT eventstore.grant_topic('es_tg_a', 'append', '-')$$, '22023', 'invalid topic grantee',
    'grant_topic with grantee ''-'' (role 0): 22023');
SELECT throws_ok($$SELECT eventstore.grant_topic('es_tg_a', 'read', 0::oid::regrole)$$, '22023', 'invalid topic grantee',
    'grant_topic with grantee 0::oid::regrole: 22023');
SELECT throws_ok($$SELECT eventstore.grant_topic('es_tg_a', 'read', 'es_tg_no_such_role')$$, '42704',
    'role "es_tg_no_such_role" does not exist', 'grant_topic to a role that does not exist: 42704');
SELECT is(public.es_tg_error($$SELECT eventstore.grant_topic('es_tg_nope', 'append', 'es_tg_app')$$),
    ARRAY['42704', 'topic "es_tg_nope" does not exist', NULL, 'Create it with eventstore.create_topic(''es_tg_nope'').'],
    'grant_topic on a topic that does not exist: 42704, naming it');
SELECT throws_ok($$SELECT eventstore.grant_topic(NULL, 'append', 'es_tg_app')$$, '22004', 'topic must not be null',
    'grant_topic on a NULL topic: 22004');
SELECT throws_ok($$SELECT eventstore.grant_topic('ES_TG_A', 'append', 'es_tg_app')$$, '42704', 'topic "ES_TG_A" does not exist',
    'topic names are compared exactly: ''ES_TG_A'' does not exist (42704)');

SELECT throws_ok($$SELECT eventstore.revoke_topic('es_tg_a', NULL, 'es_tg_app')$$, '22023', 'invalid topic privilege',
    'revoke_topic with a NULL privilege: 22023');
SELECT throws_ok($$SELECT eventstore.revoke_topic('es_tg_a', 'write', 'es_tg_app')$$, '22023', 'invalid topic privilege',
    'revoke_topic with an unknown privilege: 22023');
SELECT throws_ok($$SELECT eventstore.revoke_topic('es_tg_a', 'read', NULL)$$, '22023', 'invalid topic grantee',
    'revoke_topic with a NULL grantee: 22023');
SELECT throws_ok($$SELECT eventstore.revoke_topic('es_tg_a', 'read', '-')$$, '22023', 'invalid topic grantee',
    'revoke_topic with grantee ''-'' (role 0): 22023');
SELECT throws_ok($$SELECT eventstore.revoke_topic('es_tg_nope', 'read', 'es_tg_app')$$, '42704', 'topic "es_tg_nope" does not exist',
    'revoke_topic on a topic that does not exist: 42704');
SELECT throws_ok($$SELECT eventstore.revoke_topic(NULL, 'read', 'es_tg_app')$$, '22004', 'topic must not be null',
    'revoke_topic on a NULL topic: 22004');
SELECT lives_ok($$SELECT eventstore.revoke_topic('es_tg_a', 'read', 'es_tg_app')$$,
    'revoke_topic of a privilege that was never granted does nothing, without an error');

RESET ROLE;
SELECT is(
    (SELECT array_agg(t.name || ' ' || t.appenders::text || ' ' || t.readers::text ORDER BY t.name) FROM eventstore.topics t),
    ARRAY['es_tg_a {} {}', 'es_tg_b {} {}', 'es_tg_c {} {}'],
    'after the refused arguments, nothing is granted'
);
SELECT is(public.es_tg_functions('es_tg_app'), '{}'::text[], '... and es_tg_app may execute no function of eventstore');

------------------------------------------------------------------------------
-- At most 16 grantees per privilege and topic
------------------------------------------------------------------------------

SET LOCAL ROLE es_tg_admin;
SELECT lives_ok(
    $$SELECT eventstore.grant_topic('es_tg_c', 'append', format('es_tg_g%s', lpad(i::text, 2, '0'))::regrole)
        FROM generate_series(1, 16) AS i$$,
    'the admin grants append on es_tg_c to 16 roles');
SELECT is(cardinality(public.es_tg_grantees('es_tg_c', 'append')), 16, 'es_tg_c has 16 appenders');
SELECT is(public.es_tg_error($$SELECT eventstore.grant_topic('es_tg_c', 'append', 'es_tg_g17')$$),
    ARRAY['54000', 'too many grantees of append on topic "es_tg_c"',
          'A topic has at most 16 grantees per privilege.',
          'Grant the privilege to a group role and make the roles its members.'],
    'a 17th appender: 54000, with the limit and the hint to grant a group role');
SELECT lives_ok($$SELECT eventstore.grant_topic('es_tg_c', 'append', 'es_tg_g16')$$,
    'granting again to one of the 16 is no error');
SELECT lives_ok($$SELECT eventstore.grant_topic('es_tg_c', 'read', 'es_tg_g17')$$,
    'the limit is per privilege: the 17th role may be granted read on es_tg_c');
RESET ROLE;
SELECT is(
    (SELECT array_agg(a ORDER BY a) FROM unnest(public.es_tg_grantees('es_tg_c', 'append')) AS a),
    (SELECT array_agg(format('es_tg_g%s', lpad(i::text, 2, '0')) ORDER BY 1) FROM generate_series(1, 16) AS i),
    'es_tg_c''s appenders are the 16 roles, each once; the 17th is not among them');
SELECT is(public.es_tg_grantees('es_tg_c', 'read'), ARRAY['es_tg_g17'], 'es_tg_g17 reads es_tg_c');
SELECT is(has_function_privilege('es_tg_g17', 'eventstore.append(text,jsonb,text,bigint)', 'EXECUTE'), false,
    'the refused 17th appender was not granted EXECUTE on append');

------------------------------------------------------------------------------
-- append grants
------------------------------------------------------------------------------

SET LOCAL ROLE es_tg_admin;
SELECT lives_ok($$SELECT eventstore.grant_topic('es_tg_a', 'append', 'es_tg_app')$$,
    'the admin grants es_tg_app append on es_tg_a');
RESET ROLE;
SELECT is(public.es_tg_grantees('es_tg_a', 'append'), ARRAY['es_tg_app'], 'es_tg_a''s appenders: es_tg_app');
SELECT is(public.es_tg_grantees('es_tg_a', 'read'), '{}'::text[], 'es_tg_a''s readers: none');
SELECT is(public.es_tg_functions('es_tg_app'),
    ARRAY['append', 'append_batch', 'derived_id', 'is_valid', 'validate'],
    'with an append grant, es_tg_app may execute append, append_batch, derived_id, is_valid and validate, nothing else');
SELECT is(
    ARRAY[has_schema_privilege('es_tg_app', 'eventstore', 'USAGE'),
          has_type_privilege('es_tg_app', 'eventstore.event', 'USAGE'),
          has_type_privilege('es_tg_app', 'eventstore.delivery', 'USAGE'),
          has_table_privilege('es_tg_app', 'eventstore.topics', 'SELECT')],
    ARRAY[true, true, true, false],
    'es_tg_app has USAGE on schema eventstore and its types, and no table privilege');

SET LOCAL ROLE es_tg_app;
SELECT lives_ok($$SELECT eventstore.append('es_tg_a', public.es_tg_event(101))$$,
    'es_tg_app appends to es_tg_a');
SELECT lives_ok($$SELECT eventstore.append('es_tg_a', public.es_tg_event(102), 's1', 0)$$,
    'es_tg_app appends to a stream of es_tg_a with an expected version');
SELECT lives_ok($$SELECT eventstore.append_batch('es_tg_a', ARRAY[public.es_tg_event(103), public.es_tg_event(104)])$$,
    'es_tg_app appends a batch to es_tg_a');
SELECT is(public.es_tg_error($$SELECT eventstore.append('es_tg_b', public.es_tg_event(105))$$),
    ARRAY['42501', 'permission denied to append to topic "es_tg_b"',
          'Role "es_tg_app" is not a member of eventstore_writer and has no append grant on the topic.',
          'An eventstore_admin can grant it with eventstore.grant_topic(''es_tg_b'', ''append'', role).'],
    'es_tg_app cannot append to es_tg_b: 42501, naming the topic and the role');
SELECT throws_ok($$SELECT eventstore.append_batch('es_tg_b', ARRAY[public.es_tg_event(106), public.es_tg_event(107)])$$,
    '42501', 'permission denied to append to topic "es_tg_b"', 'es_tg_app cannot append a batch to es_tg_b');
SELECT throws_ok($$SELECT eventstore.append_batch('es_tg_b', '{}'::jsonb[])$$,
    '42501', 'permission denied to append to topic "es_tg_b"', 'not even an empty batch');
SELECT throws_ok($$SELECT eventstore.append('es_tg_b', public.es_tg_event(108), 's1', 0)$$,
    '42501', 'permission denied to append to topic "es_tg_b"', 'nor to a stream of es_tg_b');
SELECT throws_ok($$SELECT eventstore.append('es_tg_nope', public.es_tg_event(109))$$,
    '42704', 'topic "es_tg_nope" does not exist', 'a topic that does not exist is still 42704 for es_tg_app');
SELECT lives_ok($$SELECT eventstore.validate(public.es_tg_event(110)), eventstore.is_valid(public.es_tg_event(110)),
                         eventstore.derived_id('00000000-0000-4000-8000-000000000001', 'x')$$,
    'es_tg_app can validate, is_valid and derived_id');
SELECT throws_ok($$SELECT * FROM eventstore.read('es_tg_a')$$, '42501', NULL, 'an append grant does not let es_tg_app read');
SELECT throws_ok($$SELECT eventstore.grant_topic('es_tg_b', 'append', 'es_tg_app')$$, '42501', NULL,
    'a grantee cannot grant itself more (grant_topic is for eventstore_admin)');
RESET ROLE;

SET LOCAL ROLE es_tg_app_member;
SELECT lives_ok($$SELECT eventstore.append('es_tg_a', public.es_tg_event(111))$$,
    'a member of es_tg_app appends to es_tg_a: it inherits the grant');
SELECT is(public.es_tg_error($$SELECT eventstore.append('es_tg_b', public.es_tg_event(112))$$),
    ARRAY['42501', 'permission denied to append to topic "es_tg_b"',
          'Role "es_tg_app_member" is not a member of eventstore_writer and has no append grant on the topic.',
          'An eventstore_admin can grant it with eventstore.grant_topic(''es_tg_b'', ''append'', role).'],
    'a member of es_tg_app cannot append to es_tg_b: the detail names the member');
RESET ROLE;

SET LOCAL ROLE es_tg_writer;
SELECT lives_ok(
    $$SELECT eventstore.append('es_tg_a', public.es_tg_event(113)), eventstore.append('es_tg_b', public.es_tg_event(114)),
             eventstore.append('es_tg_c', public.es_tg_event(115))$$,
    'a writer still appends to every topic, granted to others or not');
SELECT lives_ok($$SELECT eventstore.append_batch('es_tg_b', ARRAY[public.es_tg_event(116)])$$,
    'a writer appends a batch to es_tg_b');
RESET ROLE;
SET LOCAL ROLE es_tg_reader;
SELECT throws_ok($$SELECT eventstore.append('es_tg_a', public.es_tg_event(117))$$, '42501', NULL,
    'a reader still cannot append');
RESET ROLE;
SELECT lives_ok($$SELECT eventstore.append('es_tg_b', public.es_tg_event(118))$$,
    'the owner (a superuser) appends to es_tg_b without any grant');

SELECT is(
    (SELECT array_agg(topic || ' ' || (envelope #>> '{data,n}') ORDER BY position) FROM eventstore.read(NULL)),
    ARRAY['es_tg_a 1', 'es_tg_a 101', 'es_tg_a 102', 'es_tg_a 103', 'es_tg_a 104', 'es_tg_a 111',
          'es_tg_a 113', 'es_tg_b 114', 'es_tg_c 115', 'es_tg_b 116', 'es_tg_b 118'],
    'exactly the allowed appends are stored: none of the refused ones');
SELECT is((SELECT array_agg(topic || '/' || stream || ' ' || version) FROM eventstore.streams),
    ARRAY['es_tg_a/s1 1'], 'the refused append to a stream of es_tg_b created no stream');

------------------------------------------------------------------------------
-- A grant or a revoke takes effect at once in the session (the UPDATE of
-- eventstore.topics invalidates the topic cache).  This backend has cached
-- es_tg_b without appenders (the refused appends above).
------------------------------------------------------------------------------

SET LOCAL ROLE es_tg_admin;
SELECT lives_ok($$SELECT eventstore.grant_topic('es_tg_b', 'append', 'es_tg_app')$$,
    'the admin grants es_tg_app append on es_tg_b too');
RESET ROLE;
SET LOCAL ROLE es_tg_app;
SELECT lives_ok($$SELECT eventstore.append('es_tg_b', public.es_tg_event(201))$$,
    'es_tg_app appends to es_tg_b at once, in the same transaction');
RESET ROLE;
SET LOCAL ROLE es_tg_admin;
SELECT lives_ok($$SELECT eventstore.revoke_topic('es_tg_b', 'append', 'es_tg_app')$$,
    'the admin revokes es_tg_app''s append on es_tg_b');
RESET ROLE;
SET LOCAL ROLE es_tg_app;
SELECT throws_ok($$SELECT eventstore.append('es_tg_b', public.es_tg_event(202))$$,
    '42501', 'permission denied to append to topic "es_tg_b"',
    'es_tg_app cannot append to es_tg_b any more, in the same transaction');
SELECT lives_ok($$SELECT eventstore.append('es_tg_a', public.es_tg_event(203))$$,
    '... and still appends to es_tg_a (revoking on one topic leaves the others, and the functions)');
RESET ROLE;

-- grant, append, revoke, append in one statement
CREATE FUNCTION public.es_tg_grant_append_revoke_append(n integer) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    result text;
BEGIN
    PERFORM eventstore.grant_topic('es_tg_b', 'append', 'es_tg_app');
    SET LOCAL ROLE es_tg_app;
    PERFORM eventstore.append('es_tg_b', public.es_tg_event(n));
    result := 'appended';
    RESET ROLE;
    PERFORM eventstore.revoke_topic('es_tg_b', 'append', 'es_tg_app');
    SET LOCAL ROLE es_tg_app;
    BEGIN
        PERFORM eventstore.append('es_tg_b', public.es_tg_event(n + 1));
        result := result || ', appended again';
    EXCEPTION WHEN insufficient_privilege THEN
        result := result || ', then refused: ' || SQLERRM;
    END;
    RESET ROLE;
    RETURN result;
END
$$;
SELECT is(public.es_tg_grant_append_revoke_append(204),
    'appended, then refused: permission denied to append to topic "es_tg_b"',
    'grant, append, revoke, append in one statement: the first append is allowed, the second refused');

-- a grant in a subtransaction that is rolled back
CREATE FUNCTION public.es_tg_grant_in_subtransaction(n integer) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    appended boolean := false;
BEGIN
    BEGIN
        PERFORM eventstore.grant_topic('es_tg_b', 'append', 'es_tg_app');
        SET LOCAL ROLE es_tg_app;
        PERFORM eventstore.append('es_tg_b', public.es_tg_event(n));
        appended := true;
        RAISE EXCEPTION 'es_tg: roll the grant back';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    RETURN appended;
END
$$;
SELECT is(public.es_tg_grant_in_subtransaction(206), true,
    'in a subtransaction, a grant lets es_tg_app append to es_tg_b');
SELECT is(current_user::text, session_user::text, 'setup: the subtransaction''s SET ROLE was rolled back with it');
SELECT is(public.es_tg_grantees('es_tg_b', 'append'), '{}'::text[], 'the grant was rolled back with the subtransaction');
SET LOCAL ROLE es_tg_app;
SELECT throws_ok($$SELECT eventstore.append('es_tg_b', public.es_tg_event(207))$$,
    '42501', 'permission denied to append to topic "es_tg_b"',
    'after the rollback es_tg_app cannot append to es_tg_b: the topic cached while the grant was there is forgotten');
RESET ROLE;
SELECT is(
    (SELECT array_agg(envelope #>> '{data,n}' ORDER BY position) FROM eventstore.read('es_tg_b')
      WHERE (envelope #>> '{data,n}')::integer > 200),
    ARRAY['201', '204'],
    'of es_tg_app''s appends to es_tg_b, only those made while it held the grant are stored');

------------------------------------------------------------------------------
-- The functions come with a role's first grant of a privilege and go with
-- its last one
------------------------------------------------------------------------------

SET LOCAL ROLE es_tg_admin;
SELECT lives_ok(
    $$SELECT eventstore.grant_topic('es_tg_a', 'append', 'es_tg_fn'), eventstore.grant_topic('es_tg_b', 'append', 'es_tg_fn'),
             eventstore.grant_topic('es_tg_a', 'read', 'es_tg_fn')$$,
    'the admin grants es_tg_fn append on es_tg_a and es_tg_b, and read on es_tg_a');
RESET ROLE;
SELECT is(public.es_tg_functions('es_tg_fn'),
    ARRAY['ack', 'append', 'append_batch', 'derived_id', 'is_valid', 'nack', 'poll', 'unprotect', 'upcast', 'validate'],
    'es_tg_fn may execute the functions of both privileges');
SET LOCAL ROLE es_tg_admin;
SELECT lives_ok($$SELECT eventstore.revoke_topic('es_tg_a', 'append', 'es_tg_fn')$$,
    'the admin revokes es_tg_fn''s append on es_tg_a');
RESET ROLE;
SELECT is(has_function_privilege('es_tg_fn', 'eventstore.append(text,jsonb,text,bigint)', 'EXECUTE'), true,
    'es_tg_fn still may execute append: its append grant on es_tg_b remains');
SET LOCAL ROLE es_tg_admin;
SELECT lives_ok($$SELECT eventstore.revoke_topic('es_tg_b', 'append', 'es_tg_fn')$$,
    'the admin revokes es_tg_fn''s last append grant (es_tg_b)');
RESET ROLE;
SELECT is(
    ARRAY[has_function_privilege('es_tg_fn', 'eventstore.append(text,jsonb,text,bigint)', 'EXECUTE'),
          has_function_privilege('es_tg_fn', 'eventstore.append_batch(text,jsonb[],text,bigint)', 'EXECUTE')],
    ARRAY[false, false],
    'with its last append grant, es_tg_fn lost EXECUTE on append and append_batch');
SELECT is(has_function_privilege('es_tg_fn', 'eventstore.derived_id(uuid,text)', 'EXECUTE'), true,
    'es_tg_fn keeps derived_id, which its remaining read grant gives too');
SELECT is(public.es_tg_functions('es_tg_fn'), ARRAY['ack', 'derived_id', 'nack', 'poll', 'unprotect', 'upcast'],
    'es_tg_fn may execute the functions of read only');
SET LOCAL ROLE es_tg_fn;
SELECT throws_ok($$SELECT eventstore.append('es_tg_a', public.es_tg_event(301))$$, '42501',
    'permission denied for function append', 'es_tg_fn cannot append any more');
RESET ROLE;
SET LOCAL ROLE es_tg_admin;
SELECT lives_ok($$SELECT eventstore.revoke_topic('es_tg_a', 'read', 'es_tg_fn')$$,
    'the admin revokes es_tg_fn''s last grant (read on es_tg_a)');
RESET ROLE;
SELECT is(public.es_tg_functions('es_tg_fn'), '{}'::text[], 'es_tg_fn may execute no function of eventstore');
SELECT is(
    ARRAY[has_schema_privilege('es_tg_fn', 'eventstore', 'USAGE'),
          has_type_privilege('es_tg_fn', 'eventstore.event', 'USAGE'),
          has_type_privilege('es_tg_fn', 'eventstore.delivery', 'USAGE')],
    ARRAY[false, false, false],
    'with its last grant, es_tg_fn lost USAGE on schema eventstore and its types');
SET LOCAL ROLE es_tg_admin;
SELECT lives_ok(
    $$SELECT eventstore.grant_topic('es_tg_a', 'append', 'es_tg_fn'), eventstore.grant_topic('es_tg_a', 'read', 'es_tg_fn'),
             eventstore.revoke_topic('es_tg_a', 'read', 'es_tg_fn')$$,
    'the admin grants es_tg_fn append and read on es_tg_a, then revokes read');
RESET ROLE;
SELECT is(public.es_tg_functions('es_tg_fn'), ARRAY['append', 'append_batch', 'derived_id', 'is_valid', 'validate'],
    'with its last read grant es_tg_fn lost poll, ack, nack, upcast and unprotect, and kept the functions of append');

------------------------------------------------------------------------------
-- read grants: consumers
------------------------------------------------------------------------------

SELECT is(
    public.es_tg_error($$SELECT eventstore.create_consumer('es_tg_out', ARRAY['es_tg_a', 'es_tg_b'], run_as => 'es_tg_svc')$$),
    ARRAY['42501', 'permission denied to read topic "es_tg_a"',
          'Role es_tg_svc, the consumer''s role, is not a member of eventstore_reader and has no read grant on the topic.',
          'An eventstore_admin can grant it with eventstore.grant_topic(''es_tg_a'', ''read'', ''es_tg_svc'').'],
    'the owner cannot create a consumer run as es_tg_svc, which may read none of its topics: 42501, naming the first');
SET LOCAL ROLE es_tg_admin;
SELECT lives_ok($$SELECT eventstore.grant_topic('es_tg_a', 'read', 'es_tg_svc')$$,
    'the admin grants es_tg_svc read on es_tg_a');
RESET ROLE;
SELECT throws_ok($$SELECT eventstore.create_consumer('es_tg_out', ARRAY['es_tg_a', 'es_tg_b'], run_as => 'es_tg_svc')$$,
    '42501', 'permission denied to read topic "es_tg_b"',
    'the consumer''s role must read every one of its topics: 42501, naming es_tg_b');
SET LOCAL ROLE es_tg_admin;
SELECT lives_ok($$SELECT eventstore.grant_topic('es_tg_b', 'read', 'es_tg_svc')$$,
    'the admin grants es_tg_svc read on es_tg_b');
RESET ROLE;
SELECT lives_ok($$SELECT eventstore.create_consumer('es_tg_out', ARRAY['es_tg_a', 'es_tg_b'], run_as => 'es_tg_svc')$$,
    'with both grants, the owner creates the outside consumer es_tg_out run as es_tg_svc');
SELECT is(
    (SELECT array_agg(t.name || ' ' || t.readers::text ORDER BY t.name) FROM eventstore.topics t WHERE t.name IN ('es_tg_a', 'es_tg_b')),
    ARRAY['es_tg_a {es_tg_svc}', 'es_tg_b {es_tg_svc}'],
    'es_tg_svc is a reader of es_tg_a and es_tg_b');
SELECT is(public.es_tg_functions('es_tg_svc'), ARRAY['ack', 'derived_id', 'nack', 'poll', 'unprotect', 'upcast'],
    'with read grants, es_tg_svc may execute poll, ack, nack, upcast, unprotect and derived_id, nothing else');
SELECT lives_ok($$SELECT eventstore.create_consumer('es_tg_out_member', ARRAY['es_tg_a', 'es_tg_b'], run_as => 'es_tg_svc_member')$$,
    'a consumer run as a member of es_tg_svc: the member inherits the read grants');
SELECT lives_ok($$SELECT eventstore.create_consumer('es_tg_out_reader', ARRAY['es_tg_a', 'es_tg_b', 'es_tg_c'], run_as => 'es_tg_reader')$$,
    'a consumer run as a reader needs no grant');
SELECT lives_ok($$SELECT eventstore.create_consumer('es_tg_out_super', ARRAY['es_tg_a', 'es_tg_b', 'es_tg_c'])$$,
    'a consumer run as the owner (a superuser) needs no grant');

-- Fixture (as in consumer_privileges.sql): this transaction's events are
-- never in a consumer's window, so deliveries come from parked events
-- marked for replay.
INSERT INTO eventstore.parked (consumer, event_id, position, topic, attempts, error, replay)
SELECT 'es_tg_out', e.id, e.position, e.topic, 5, 'fixture', true
  FROM eventstore.events e WHERE e.id = '00000000-0000-4000-8000-000000000101';
SET LOCAL ROLE es_tg_svc;
SELECT is((SELECT array_agg(envelope #>> '{data,n}') FROM eventstore.poll('es_tg_out')), ARRAY['101'],
    'es_tg_svc polls es_tg_out: its replayed event');
SELECT lives_ok($$SELECT eventstore.ack('es_tg_out', 1)$$, 'es_tg_svc acks the batch');
RESET ROLE;

INSERT INTO eventstore.parked (consumer, event_id, position, topic, attempts, error, replay)
SELECT 'es_tg_out', e.id, e.position, e.topic, 5, 'fixture', true
  FROM eventstore.events e WHERE e.id = '00000000-0000-4000-8000-000000000102';
SET LOCAL ROLE es_tg_admin;
SELECT lives_ok($$SELECT eventstore.revoke_topic('es_tg_b', 'read', 'es_tg_svc')$$,
    'the admin revokes es_tg_svc''s read on es_tg_b');
RESET ROLE;
SET LOCAL ROLE es_tg_svc;
SELECT is(public.es_tg_error($$SELECT * FROM eventstore.poll('es_tg_out')$$),
    ARRAY['42501', 'permission denied to read topic "es_tg_b"',
          'Role es_tg_svc, the consumer''s role, is not a member of eventstore_reader and has no read grant on the topic.',
          'An eventstore_admin can grant it with eventstore.grant_topic(''es_tg_b'', ''read'', ''es_tg_svc'').'],
    'once read on es_tg_b is revoked, es_tg_svc cannot poll es_tg_out, in the same transaction: 42501');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_tg_out', 100, 0)$$, '42501', 'permission denied to read topic "es_tg_b"',
    'nor poll a member of es_tg_out');
RESET ROLE;
SET LOCAL ROLE es_tg_svc_member;
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_tg_out_member')$$, '42501', 'permission denied to read topic "es_tg_b"',
    'nor can a member of es_tg_svc poll the consumer run as itself');
RESET ROLE;
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_tg_out')$$, '42501', 'permission denied to read topic "es_tg_b"',
    'not even the owner (a superuser) can poll es_tg_out: it is the consumer''s role that must read its topics');
SELECT results_eq(
    $$SELECT p.event_id, p.replay, p.batch_id FROM eventstore.parked p WHERE p.consumer = 'es_tg_out'$$,
    $$VALUES ('00000000-0000-4000-8000-000000000102'::uuid, true, NULL::bigint)$$,
    'the refused polls delivered nothing: the event is still parked for replay');
SET LOCAL ROLE es_tg_admin;
SELECT lives_ok($$SELECT eventstore.grant_topic('es_tg_b', 'read', 'es_tg_svc')$$,
    'the admin grants es_tg_svc read on es_tg_b again');
RESET ROLE;
SET LOCAL ROLE es_tg_svc;
SELECT is((SELECT array_agg(envelope #>> '{data,n}') FROM eventstore.poll('es_tg_out')), ARRAY['102'],
    'es_tg_svc polls es_tg_out again: the event');
RESET ROLE;

-- in-database consumers: checked on every batch
SELECT lives_ok(
    $$SELECT eventstore.create_consumer('es_tg_in', ARRAY['es_tg_a'], 'public.es_tg_handler(eventstore.event)',
                                        run_as => 'es_tg_svc')$$,
    'the owner creates the in-database consumer es_tg_in run as es_tg_svc');
INSERT INTO eventstore.parked (consumer, event_id, position, topic, attempts, error, replay)
SELECT 'es_tg_in', e.id, e.position, e.topic, 5, 'fixture', true
  FROM eventstore.events e WHERE e.id = '00000000-0000-4000-8000-000000000103';
SELECT is(eventstore.run_consumer('es_tg_in'), 1::bigint, 'run_consumer(es_tg_in) handles its replayed event');
SELECT is((SELECT array_agg(event_id::text || ' ' || as_user) FROM public.es_tg_calls),
    ARRAY['00000000-0000-4000-8000-000000000103 es_tg_svc'], 'the handler ran as es_tg_svc');
INSERT INTO eventstore.parked (consumer, event_id, position, topic, attempts, error, replay)
SELECT 'es_tg_in', e.id, e.position, e.topic, 5, 'fixture', true
  FROM eventstore.events e WHERE e.id = '00000000-0000-4000-8000-000000000104';
SET LOCAL ROLE es_tg_admin;
SELECT lives_ok($$SELECT eventstore.revoke_topic('es_tg_a', 'read', 'es_tg_svc')$$,
    'the admin revokes es_tg_svc''s read on es_tg_a');
RESET ROLE;
SELECT is(public.es_tg_error($$SELECT eventstore.run_consumer('es_tg_in')$$),
    ARRAY['42501', 'permission denied to read topic "es_tg_a"',
          'Role es_tg_svc, the consumer''s role, is not a member of eventstore_reader and has no read grant on the topic.',
          'An eventstore_admin can grant it with eventstore.grant_topic(''es_tg_a'', ''read'', ''es_tg_svc'').'],
    'run_consumer(es_tg_in) after the revoke, in the same transaction: 42501');
SELECT is((SELECT count(*) FROM public.es_tg_calls), 1::bigint, 'the handler was not called again');
SELECT is((SELECT replay FROM eventstore.parked WHERE consumer = 'es_tg_in'), true,
    'the event is still parked for replay');

------------------------------------------------------------------------------
-- read grants: upcasters
------------------------------------------------------------------------------

SET LOCAL ROLE es_tg_registrar;
SELECT is(public.es_tg_error($$SELECT eventstore.create_upcaster('es_tg_a', 1, 2, 'public.es_tg_up(jsonb)')$$),
    ARRAY['42501', 'permission denied to read topic "es_tg_a"',
          'Role es_tg_registrar, the upcaster''s registrar, is not a member of eventstore_reader and has no read grant on the topic.',
          'An eventstore_admin can grant it with eventstore.grant_topic(''es_tg_a'', ''read'', ''es_tg_registrar'').'],
    'an admin that may not read es_tg_a cannot register an upcaster for it: 42501');
RESET ROLE;
SELECT is((SELECT count(*) FROM eventstore.upcasters), 0::bigint, 'no upcaster was registered');
SET LOCAL ROLE es_tg_admin;
SELECT lives_ok($$SELECT eventstore.grant_topic('es_tg_a', 'read', 'es_tg_registrar')$$,
    'the admin grants es_tg_registrar read on es_tg_a');
RESET ROLE;
SET LOCAL ROLE es_tg_registrar;
SELECT lives_ok($$SELECT eventstore.create_upcaster('es_tg_a', 1, 2, 'public.es_tg_up(jsonb)')$$,
    'with the grant, es_tg_registrar registers an upcaster for es_tg_a');
RESET ROLE;
SELECT is((SELECT array_agg(topic || ' ' || run_as::text) FROM eventstore.upcasters), ARRAY['es_tg_a es_tg_registrar'],
    'the upcaster belongs to es_tg_registrar');
SET LOCAL ROLE es_tg_admin;
SELECT lives_ok(
    $$SELECT eventstore.revoke_topic('es_tg_a', 'read', 'es_tg_registrar'), eventstore.set_topic_version('es_tg_a', '2.0')$$,
    'the admin revokes es_tg_registrar''s read on es_tg_a and moves es_tg_a to 2.0');
RESET ROLE;
SELECT throws_ok($$SELECT eventstore.upcast(eventstore.get('00000000-0000-4000-8000-000000000001'))$$,
    '42501', 'permission denied to read topic "es_tg_a"',
    'an upcaster whose registrar may no longer read its topic is refused, as a consumer is');

------------------------------------------------------------------------------
-- Role names that must be quoted
------------------------------------------------------------------------------

SET LOCAL ROLE es_tg_admin;
SELECT lives_ok($$SELECT eventstore.grant_topic('es_tg_c', 'read', '"es_tg ""odd"" rôle"')$$,
    'grant_topic to a role named es_tg "odd" rôle');
SELECT lives_ok($$SELECT eventstore.grant_topic('es_tg_b', 'append', '"Es_Tg_Upper"')$$,
    'grant_topic to a role named Es_Tg_Upper');
RESET ROLE;
SELECT is(public.es_tg_grantees('es_tg_c', 'read'), ARRAY['es_tg_g17', '"es_tg ""odd"" rôle"'],
    'es_tg "odd" rôle reads es_tg_c');
SELECT is(has_function_privilege('"es_tg ""odd"" rôle"'::regrole::oid, 'eventstore.poll(text,integer,integer)', 'EXECUTE'), true,
    'es_tg "odd" rôle may execute poll');
SELECT lives_ok($$SELECT eventstore.create_consumer('es_tg_odd', ARRAY['es_tg_c'], run_as => '"es_tg ""odd"" rôle"')$$,
    'a consumer of es_tg_c run as es_tg "odd" rôle');
SET LOCAL ROLE "es_tg ""odd"" rôle";
SELECT is(public.es_tg_error($$SELECT eventstore.append('es_tg_c', public.es_tg_event(401))$$),
    ARRAY['42501', 'permission denied for function append', NULL, NULL],
    'a read grant does not let es_tg "odd" rôle append');
SELECT lives_ok($$SELECT * FROM eventstore.poll('es_tg_odd')$$, 'es_tg "odd" rôle polls its consumer');
RESET ROLE;
SET LOCAL ROLE "Es_Tg_Upper";
SELECT lives_ok($$SELECT eventstore.append('es_tg_b', public.es_tg_event(402))$$, 'Es_Tg_Upper appends to es_tg_b');
SELECT is(public.es_tg_error($$SELECT eventstore.append('es_tg_c', public.es_tg_event(403))$$),
    ARRAY['42501', 'permission denied to append to topic "es_tg_c"',
          'Role "Es_Tg_Upper" is not a member of eventstore_writer and has no append grant on the topic.',
          'An eventstore_admin can grant it with eventstore.grant_topic(''es_tg_c'', ''append'', role).'],
    'Es_Tg_Upper cannot append to es_tg_c: the detail names it');
RESET ROLE;
SELECT is(
    public.es_tg_error($$SELECT eventstore.create_consumer('es_tg_odd_b', ARRAY['es_tg_b'], run_as => '"es_tg ""odd"" rôle"')$$),
    ARRAY['42501', 'permission denied to read topic "es_tg_b"',
          'Role "es_tg ""odd"" rôle", the consumer''s role, is not a member of eventstore_reader and has no read grant on the topic.',
          'An eventstore_admin can grant it with eventstore.grant_topic(''es_tg_b'', ''read'', ''"es_tg ""odd"" rôle"'').'],
    'a consumer of es_tg_b run as es_tg "odd" rôle is refused; detail and hint name the role as regrole input');
-- revoke_topic on its own: the grants as grant_topic leaves them, made by
-- hand where grant_topic failed above
SELECT lives_ok($do$DO $$
BEGIN
    UPDATE eventstore.topics SET readers = readers || '"es_tg ""odd"" rôle"'::regrole
     WHERE name = 'es_tg_c' AND NOT '"es_tg ""odd"" rôle"'::regrole = ANY (readers);
    UPDATE eventstore.topics SET appenders = appenders || '"Es_Tg_Upper"'::regrole
     WHERE name = 'es_tg_b' AND NOT '"Es_Tg_Upper"'::regrole = ANY (appenders);
    GRANT USAGE ON SCHEMA eventstore TO "es_tg ""odd"" rôle", "Es_Tg_Upper";
    GRANT USAGE ON TYPE eventstore.event, eventstore.delivery TO "es_tg ""odd"" rôle", "Es_Tg_Upper";
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO "es_tg ""odd"" rôle"', eventstore.topic_privilege_functions('read'));
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO "Es_Tg_Upper"', eventstore.topic_privilege_functions('append'));
END
$$$do$,
    'setup: es_tg "odd" rôle holds read on es_tg_c and Es_Tg_Upper append on es_tg_b, with their functions');
SET LOCAL ROLE es_tg_admin;
SELECT lives_ok($$SELECT eventstore.revoke_topic('es_tg_c', 'read', '"es_tg ""odd"" rôle"')$$,
    'revoke_topic from es_tg "odd" rôle');
SELECT lives_ok($$SELECT eventstore.revoke_topic('es_tg_b', 'append', '"Es_Tg_Upper"')$$,
    'revoke_topic from Es_Tg_Upper');
RESET ROLE;
SELECT is(
    ARRAY[public.es_tg_grantees('es_tg_c', 'read')::text, public.es_tg_grantees('es_tg_b', 'append')::text,
          public.es_tg_functions('"es_tg ""odd"" rôle"')::text, public.es_tg_functions('"Es_Tg_Upper"')::text],
    ARRAY['{es_tg_g17}', '{}', '{}', '{}'],
    'the revokes took the grants and the functions back');

------------------------------------------------------------------------------
-- Across transactions and sessions (through dblink, in es_tg_db): es_tg_x1
-- appends as es_tg_x_app; es_tg_x2, the owner's session, grants and
-- revokes.  Each dblink_exec outside BEGIN/COMMIT is a transaction.
------------------------------------------------------------------------------

-- A query in a dblink session (in a transaction of its own unless the
-- session opened one); its rows are counted.  Remote errors come back with
-- their SQLSTATE and message.
CREATE FUNCTION public.es_tg_remote(conn text, query text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(*) FROM dblink(conn, query) AS t(r text)
$$;
CREATE FUNCTION public.es_tg_remote_append(conn text, topic text, n integer) RETURNS bigint
LANGUAGE sql AS $$
    SELECT public.es_tg_remote(conn, format('SELECT eventstore.append(%L, %L::jsonb)', topic, public.es_tg_event(n)))
$$;
SELECT lives_ok(
    $$SELECT public.es_tg_remote('es_tg_x2', $q$SELECT eventstore.create_topic(t)::text FROM unnest(ARRAY['tx', 'ty']) AS t$q$),
             public.es_tg_remote('es_tg_x2', $q$SELECT eventstore.grant_topic('ty', 'append', 'es_tg_x_app')::text$q$),
             dblink_exec('es_tg_x1', 'SET ROLE es_tg_x_app')$$,
    'setup: in es_tg_db, the owner creates topics tx and ty and grants es_tg_x_app append on ty; '
    'es_tg_x1 is es_tg_x_app from now on');
SELECT throws_ok($$SELECT public.es_tg_remote_append('es_tg_x1', 'tx', 501)$$,
    '42501', 'permission denied to append to topic "tx"', 'es_tg_x_app cannot append to tx (its session caches tx)');
SELECT lives_ok($$SELECT public.es_tg_remote_append('es_tg_x1', 'ty', 502)$$, 'es_tg_x_app appends to ty');
SELECT lives_ok($$SELECT public.es_tg_remote('es_tg_x2', $q$SELECT eventstore.grant_topic('tx', 'append', 'es_tg_x_app')::text$q$)$$,
    'the owner''s session grants es_tg_x_app append on tx, and commits');
SELECT lives_ok($$SELECT public.es_tg_remote_append('es_tg_x1', 'tx', 503)$$,
    'es_tg_x_app appends to tx in its next transaction: a grant committed in another session takes effect');
SELECT lives_ok($$SELECT public.es_tg_remote('es_tg_x2', $q$SELECT eventstore.revoke_topic('tx', 'append', 'es_tg_x_app')::text$q$)$$,
    'the owner''s session revokes it, and commits');
SELECT throws_ok($$SELECT public.es_tg_remote_append('es_tg_x1', 'tx', 504)$$,
    '42501', 'permission denied to append to topic "tx"',
    'es_tg_x_app cannot append to tx in its next transaction: a revoke committed in another session takes effect');

-- one session: grant, append, revoke, append, each in a transaction of its own
SELECT lives_ok(
    $$SELECT public.es_tg_remote('es_tg_x2', $q$SELECT eventstore.grant_topic('tx', 'append', 'es_tg_x_app')::text$q$),
             dblink_exec('es_tg_x2', 'SET ROLE es_tg_x_app'),
             public.es_tg_remote_append('es_tg_x2', 'tx', 505),
             dblink_exec('es_tg_x2', 'RESET ROLE'),
             public.es_tg_remote('es_tg_x2', $q$SELECT eventstore.revoke_topic('tx', 'append', 'es_tg_x_app')::text$q$),
             dblink_exec('es_tg_x2', 'SET ROLE es_tg_x_app')$$,
    'in one session, transaction after transaction: grant, append as es_tg_x_app, revoke');
SELECT throws_ok($$SELECT public.es_tg_remote_append('es_tg_x2', 'tx', 506)$$,
    '42501', 'permission denied to append to topic "tx"', '... then the append is refused');
SELECT lives_ok($$SELECT dblink_exec('es_tg_x2', 'RESET ROLE')$$, 'setup: es_tg_x2 is the owner again');

-- A REPEATABLE READ transaction whose snapshot predates a revoke: once the
-- invalidation reaches the session (here when it first locks pg_namespace),
-- the topic is looked up again in the latest snapshot, not the
-- transaction's, and no stale grant is cached for later transactions.
SELECT lives_ok(
    $$SELECT public.es_tg_remote('es_tg_x2', $q$SELECT eventstore.grant_topic('tx', 'append', 'es_tg_x_app')::text$q$),
             public.es_tg_remote_append('es_tg_x1', 'tx', 507),
             dblink_exec('es_tg_x1', 'BEGIN ISOLATION LEVEL REPEATABLE READ'),
             public.es_tg_remote('es_tg_x1', 'SELECT 1'),
             public.es_tg_remote('es_tg_x2', $q$SELECT eventstore.revoke_topic('tx', 'append', 'es_tg_x_app')::text$q$),
             public.es_tg_remote('es_tg_x1', 'SELECT count(*) FROM pg_catalog.pg_namespace')$$,
    'setup: es_tg_x_app appends to tx under a grant, then opens a REPEATABLE READ transaction; '
    'the owner''s session revokes the grant meanwhile');
SELECT throws_ok($$SELECT public.es_tg_remote_append('es_tg_x1', 'tx', 508)$$,
    '42501', 'permission denied to append to topic "tx"',
    'in the REPEATABLE READ transaction whose snapshot still shows the grant, the append is refused');
SELECT lives_ok($$SELECT dblink_exec('es_tg_x1', 'ROLLBACK')$$, 'setup: es_tg_x1 ends that transaction');
SELECT throws_ok($$SELECT public.es_tg_remote_append('es_tg_x1', 'tx', 509)$$,
    '42501', 'permission denied to append to topic "tx"', '... and in the next one');
SELECT is(
    (SELECT array_agg(t || ' ' || n ORDER BY p)
       FROM dblink('es_tg_x2', $q$SELECT position, topic, envelope #>> '{data,n}' FROM eventstore.read(NULL)$q$)
            AS r(p bigint, t text, n text)),
    ARRAY['ty 502', 'tx 503', 'tx 505', 'tx 507'],
    'es_tg_db holds exactly the appends made under a grant');

SELECT lives_ok(
    $$SELECT dblink_disconnect('es_tg_x1'), dblink_disconnect('es_tg_x2'),
             dblink_exec('es_tg_root', 'DROP DATABASE es_tg_db WITH (FORCE)'),
             dblink_exec('es_tg_root', 'DROP ROLE es_tg_x_app'),
             dblink_disconnect('es_tg_root')$$,
    'cleanup: es_tg_db and es_tg_x_app are dropped');

SELECT * FROM finish();
ROLLBACK;
