-- test/pgtap/consumer_privileges.sql: structure, roles and privileges of the
-- consumer part of eventstore (consumers and their members, parked events,
-- upcasters, poll/ack).
--
-- Rules (README.md, "Roles and privileges", and the ownership model of
-- extension/consumer_access.c): eventstore_reader polls, acks and nacks
-- outside consumers and sees their status; eventstore_admin creates, drops,
-- resets and runs consumers, changes their number of members
-- (set_consumer_members) and registers upcasters; the consumer tables
-- (consumers, members, parked) and the sequence of batch ids are written
-- only through the API; the internal helpers are executable by nobody;
-- nothing is granted to PUBLIC.
--
-- A consumer belongs to a role, consumers.run_as (default: current_user at
-- create_consumer; never 0, '-').  Only members of that role may create it,
-- poll, ack, nack or run it; its handler runs as that role, and only if the
-- role may EXECUTE it.  An upcaster belongs to the role that registered it,
-- upcasters.run_as (current_user at create_upcaster): it runs as that role
-- whoever receives the event (a consumer's role, a caller of
-- eventstore.upcast(), a superuser), only if that role may EXECUTE it, and
-- with search_path fixed to pg_catalog, pg_temp.  Handlers and upcasters run
-- as security-restricted operations (no temporary objects) and the settings
-- they change are reset when they return, so that code of one role cannot
-- leave traps in the session for the code of the next one (upcast.c
-- call_as_role).  create_consumer, create_upcaster, poll, ack and nack are C
-- functions running as the caller (not SECURITY DEFINER) that check the
-- caller, then run internal plpgsql functions as the extension's owner.
--
-- Checked as in privileges.sql: the catalogue (structure), the ACLs
-- (has_*_privilege), and what members of each role can actually do (SET
-- ROLE, SET SESSION AUTHORIZATION, and SECURITY DEFINER functions or
-- run_consumer for code that runs as one role in another role's session,
-- the way the dispatcher workers run handlers).  Everything happens in one
-- transaction that is rolled back, including the test roles.
--
-- Fixture note: a consumer's window counts this (never committed)
-- transaction as in progress, so the events appended here are never in a
-- window.  Deliveries therefore come from parked events marked for replay,
-- which go out first, through the same poll/ack/nack and run_consumer paths.
--
-- The consumer's role must be able to read the consumer's topics, and an
-- upcaster's registrar the upcaster's topic (as a member of
-- eventstore_reader, or through eventstore.grant_topic; per-topic grants are
-- checked in detail by topic_grants.sql).  The roles below that are not
-- readers are granted read on the topics their consumers and upcasters use.
--
-- The tests at the end check holes of earlier models that are now closed.

BEGIN;
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
RESET client_min_messages;

SELECT plan(520);

------------------------------------------------------------------------------
-- Structure: tables consumers, members, parked, upcasters, sequence batch_ids
------------------------------------------------------------------------------

SELECT has_table('eventstore', 'consumers', 'table eventstore.consumers exists');
SELECT has_table('eventstore', 'members', 'table eventstore.members exists');
SELECT has_table('eventstore', 'parked', 'table eventstore.parked exists');
SELECT has_table('eventstore', 'upcasters', 'table eventstore.upcasters exists');

-- consumers
SELECT col_is_pk('eventstore', 'consumers', 'name', 'consumers.name is the primary key');
SELECT col_type_is('eventstore', 'consumers', c, t, format('consumers.%s is %s', c, t))
  FROM (VALUES ('name', 'text'), ('topics', 'text[]'), ('handler', 'text'), ('run_as', 'regrole'),
               ('batch_size', 'integer'), ('max_attempts', 'integer'),
               ('members', 'integer')) AS v(c, t);
-- the progress is its members' (1.3): none of it is left in consumers
SELECT hasnt_column('eventstore', 'consumers', c, format('consumers has no column %s (it is in members)', c))
  FROM unnest(ARRAY['start_after', 'done_snapshot', 'window_snapshot', 'window_after', 'position',
                    'handled', 'batch_id', 'batch_kind', 'batch_upto', 'batch_attempt',
                    'leased_until', 'attempts', 'last_error', 'retry_at', 'last_run']) AS c;
SELECT col_not_null('eventstore', 'consumers', 'members', 'consumers.members is NOT NULL');
SELECT col_default_is('eventstore', 'consumers', 'members', 1, 'consumers.members defaults to 1');
SELECT is(
    (SELECT pg_get_constraintdef(oid) FROM pg_constraint
      WHERE conrelid = 'eventstore.consumers'::regclass AND contype = 'c'
        AND pg_get_constraintdef(oid) LIKE '%members%'),
    'CHECK (((members >= 1) AND (members <= 256)))',
    'consumers.members is checked to be between 1 and 256 in the table too'
);
SELECT col_not_null('eventstore', 'consumers', 'topics', 'consumers.topics is NOT NULL');
SELECT col_not_null('eventstore', 'consumers', 'run_as', 'consumers.run_as is NOT NULL');
SELECT col_is_null('eventstore', 'consumers', 'handler', 'consumers.handler is nullable (NULL: outside consumer)');
SELECT is(
    (SELECT pg_get_constraintdef(oid) FROM pg_constraint
      WHERE conrelid = 'eventstore.consumers'::regclass AND contype = 'c'
        AND pg_get_constraintdef(oid) LIKE '%name ~%'),
    'CHECK (((name ~ ''^[a-z][a-z0-9_]*$''::text) AND (length(name) < 64)))',
    'consumers.name is checked against ^[a-z][a-z0-9_]*$ and fewer than 64 characters in the table too'
);

-- members: the progress of each member of each consumer
SELECT col_is_pk('eventstore', 'members', ARRAY['consumer', 'generation', 'member'],
                 'members is keyed by (consumer, generation, member)');
SELECT col_type_is('eventstore', 'members', c, t, format('members.%s is %s', c, t))
  FROM (VALUES ('consumer', 'text'), ('generation', 'integer'), ('member', 'integer'),
               ('member_count', 'integer'), ('fence_snapshot', 'pg_snapshot'),
               ('start_after', 'bigint'), ('done_snapshot', 'pg_snapshot'),
               ('window_snapshot', 'pg_snapshot'), ('window_after', 'bigint'),
               ('fence_floor', 'bigint'), ('done_floor', 'bigint'), ('window_floor', 'bigint'),
               ('position', 'bigint'), ('handled', 'bigint'), ('batch_id', 'bigint'),
               ('batch_attempt', 'integer'), ('leased_until', 'timestamp with time zone'),
               ('attempts', 'integer'), ('last_error', 'text'),
               ('retry_at', 'timestamp with time zone')) AS v(c, t);
SELECT fk_ok('eventstore', 'members', 'consumer', 'eventstore', 'consumers', 'name',
             'members.consumer references consumers.name');
SELECT is(
    (SELECT confdeltype FROM pg_constraint
      WHERE conrelid = 'eventstore.members'::regclass AND contype = 'f'),
    'c'::"char",
    'members go with their consumer (ON DELETE CASCADE)'
);
SELECT is(
    (SELECT array_agg(pg_get_constraintdef(oid) ORDER BY pg_get_constraintdef(oid)) FROM pg_constraint
      WHERE conrelid = 'eventstore.members'::regclass AND contype = 'c'
        AND pg_get_constraintdef(oid) ~ 'member'),
    ARRAY['CHECK (((member >= 0) AND (member < member_count)))',
          'CHECK (((member_count >= 1) AND (member_count <= 256)))'],
    'members.member is checked to be between 0 and member_count - 1, member_count between 1 and 256'
);

-- batch_ids: the numbers of the batches given to outside consumers
SELECT has_sequence('eventstore', 'batch_ids', 'sequence eventstore.batch_ids exists');

-- parked
SELECT col_is_pk('eventstore', 'parked', ARRAY['consumer', 'event_id'], 'parked is keyed by (consumer, event_id)');
SELECT col_type_is('eventstore', 'parked', c, t, format('parked.%s is %s', c, t))
  FROM (VALUES ('consumer', 'text'), ('event_id', 'uuid'), ('position', 'bigint'), ('topic', 'text'),
               ('attempts', 'integer'), ('error', 'text'), ('parked_at', 'timestamp with time zone'),
               ('replay', 'boolean'), ('batch_id', 'bigint')) AS v(c, t);
SELECT fk_ok('eventstore', 'parked', 'consumer', 'eventstore', 'consumers', 'name',
             'parked.consumer references consumers.name');
SELECT is(
    (SELECT confdeltype FROM pg_constraint
      WHERE conrelid = 'eventstore.parked'::regclass AND contype = 'f'),
    'c'::"char",
    'parked events go with their consumer (ON DELETE CASCADE)'
);

-- upcasters: an upcaster runs as the role that registered it, upcasters.run_as
SELECT col_is_pk('eventstore', 'upcasters', ARRAY['topic', 'from_major'], 'upcasters is keyed by (topic, from_major)');
SELECT col_type_is('eventstore', 'upcasters', c, t, format('upcasters.%s is %s', c, t))
  FROM (VALUES ('topic', 'text'), ('from_major', 'integer'), ('to_major', 'integer'), ('fn', 'text'),
               ('run_as', 'regrole'), ('created_at', 'timestamp with time zone')) AS v(c, t);
SELECT col_not_null('eventstore', 'upcasters', 'run_as',
    'upcasters.run_as is NOT NULL: every upcaster runs as the role that registered it');
-- neither a consumer nor an upcaster can belong to role 0 ('-')
SELECT is(
    (SELECT array_agg(conrelid::regclass::text ORDER BY conrelid::regclass::text) FROM pg_constraint
      WHERE conrelid IN ('eventstore.consumers'::regclass, 'eventstore.upcasters'::regclass) AND contype = 'c'
        AND pg_get_constraintdef(oid) = 'CHECK (((run_as)::oid <> (0)::oid))'),
    ARRAY['eventstore.consumers', 'eventstore.upcasters'],
    'consumers.run_as and upcasters.run_as are checked against 0 (''-'', no role) in the tables'
);
SELECT fk_ok('eventstore', 'upcasters', 'topic', 'eventstore', 'topics', 'name',
             'upcasters.topic references topics.name');

------------------------------------------------------------------------------
-- Structure: views consumer_status and consumer_members, types delivery and event
------------------------------------------------------------------------------

SELECT has_view('eventstore', 'consumer_status', 'view eventstore.consumer_status exists');
SELECT is(
    (SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
       FROM pg_attribute a
      WHERE a.attrelid = 'eventstore.consumer_status'::regclass AND a.attnum > 0 AND NOT a.attisdropped),
    ARRAY['name text', 'topics text[]', 'kind text', 'handler text', 'position bigint',
          'lag_events bigint', 'lag_seconds double precision', 'handled bigint', 'attempts integer',
          'parked bigint', 'last_error text', 'retry_at timestamp with time zone',
          'last_run timestamp with time zone', 'batch_id bigint', 'leased_until timestamp with time zone',
          'skipped bigint', 'types text[]', 'members integer'],
    'consumer_status has name, topics, kind, handler, position, lag_events, lag_seconds, handled, attempts, '
    'parked, last_error, retry_at, last_run, batch_id, leased_until, skipped, types, members in that order'
);

SELECT has_view('eventstore', 'consumer_members', 'view eventstore.consumer_members exists');
SELECT is(
    (SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
       FROM pg_attribute a
      WHERE a.attrelid = 'eventstore.consumer_members'::regclass AND a.attnum > 0 AND NOT a.attisdropped),
    ARRAY['consumer text', 'member integer', 'members integer', 'generation integer', 'retiring boolean',
          'position bigint', 'lag_events bigint', 'lag_seconds double precision', 'handled bigint',
          'batch_id bigint', 'leased_until timestamp with time zone', 'attempts integer', 'parked bigint',
          'last_error text', 'retry_at timestamp with time zone', 'last_run timestamp with time zone'],
    'consumer_members has consumer, member, members, generation, retiring, position, lag_events, lag_seconds, '
    'handled, batch_id, leased_until, attempts, parked, last_error, retry_at, last_run in that order'
);

SELECT has_composite('eventstore', 'delivery', 'composite type eventstore.delivery exists');
SELECT has_composite('eventstore', 'event', 'composite type eventstore.event exists');
SELECT is(
    (SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
       FROM pg_attribute a
      WHERE a.attrelid = 'eventstore.delivery'::regclass AND a.attnum > 0 AND NOT a.attisdropped),
    ARRAY['position bigint', 'id uuid', 'topic text', 'stream text', 'stream_version bigint',
          'envelope jsonb', 'recorded_at timestamp with time zone', 'batch_id bigint', 'attempt integer',
          'member integer'],
    'eventstore.delivery has position, id, topic, stream, stream_version, envelope, recorded_at, batch_id, attempt, '
    'member in that order'
);
SELECT is(
    (SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
       FROM pg_attribute a
      WHERE a.attrelid = 'eventstore.delivery'::regclass AND a.attnum BETWEEN 1 AND 7),
    (SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
       FROM pg_attribute a
      WHERE a.attrelid = 'eventstore.event'::regclass AND a.attnum > 0 AND NOT a.attisdropped),
    'a delivery is an eventstore.event followed by batch_id, attempt and member'
);

------------------------------------------------------------------------------
-- Structure: the consumer API's functions and what they return
------------------------------------------------------------------------------

SELECT has_function('eventstore', f, a, format('%s(%s) exists', f, array_to_string(a, ', ')))
  FROM (VALUES ('create_consumer', ARRAY['text', 'text[]', 'regprocedure', 'integer', 'integer', 'regrole', 'text[]', 'integer']),
               ('drop_consumer', ARRAY['text']),
               ('reset_consumer', ARRAY['text', 'bigint']),
               ('set_consumer_members', ARRAY['text', 'integer']),
               ('run_consumer', ARRAY['text', 'integer']),
               ('poll', ARRAY['text', 'integer', 'integer']),
               ('ack', ARRAY['text', 'bigint']),
               ('nack', ARRAY['text', 'bigint', 'text']),
               ('replay_parked', ARRAY['text', 'uuid']),
               ('create_upcaster', ARRAY['text', 'integer', 'integer', 'regprocedure']),
               ('set_topic_version', ARRAY['text', 'text']),
               ('upcast', ARRAY['eventstore.event']),
               ('derived_id', ARRAY['uuid', 'text']),
               ('undelivered', ARRAY['text'])) AS v(f, a);
SELECT function_returns('eventstore', f, a, r, format('%s returns %s', f, r))
  FROM (VALUES ('create_consumer', ARRAY['text', 'text[]', 'regprocedure', 'integer', 'integer', 'regrole', 'text[]', 'integer'], 'void'),
               ('drop_consumer', ARRAY['text'], 'void'),
               ('reset_consumer', ARRAY['text', 'bigint'], 'void'),
               ('set_consumer_members', ARRAY['text', 'integer'], 'void'),
               ('run_consumer', ARRAY['text', 'integer'], 'bigint'),
               ('poll', ARRAY['text', 'integer', 'integer'], 'setof eventstore.delivery'),
               ('ack', ARRAY['text', 'bigint'], 'void'),
               ('nack', ARRAY['text', 'bigint', 'text'], 'void'),
               ('replay_parked', ARRAY['text', 'uuid'], 'void'),
               ('create_upcaster', ARRAY['text', 'integer', 'integer', 'regprocedure'], 'void'),
               ('set_topic_version', ARRAY['text', 'text'], 'void'),
               ('upcast', ARRAY['eventstore.event'], 'eventstore.event'),
               ('derived_id', ARRAY['uuid', 'text'], 'uuid')) AS v(f, a, r);
-- undelivered() takes a consumer's name: a caller can no longer make up a
-- consumers row (any topics, any snapshot) and count events through it
SELECT hasnt_function('eventstore', 'undelivered', ARRAY['eventstore.consumers'],
    'there is no undelivered(eventstore.consumers) taking a made-up consumers row');
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text) FROM pg_proc p
      WHERE p.pronamespace = 'eventstore'::regnamespace AND p.proname = 'undelivered'),
    ARRAY['eventstore.undelivered(text)'],
    'undelivered(text) is the only undelivered function'
);
-- 1.3 replaced these (create_consumer, register_consumer and poll gained
-- members and member): the old signatures are gone, so that a call without
-- the new argument resolves to the new function and its default
SELECT hasnt_function('eventstore', f, a, format('there is no %s(%s) any more', f, array_to_string(a, ', ')))
  FROM (VALUES ('create_consumer', ARRAY['text', 'text[]', 'regprocedure', 'integer', 'integer', 'regrole', 'text[]']),
               ('register_consumer', ARRAY['text', 'text[]', 'regprocedure', 'integer', 'integer', 'regrole', 'text[]']),
               ('poll', ARRAY['text', 'integer']),
               ('is_undelivered', ARRAY['eventstore.consumers', 'bigint', 'xid8'])) AS v(f, a);
SELECT is(
    (SELECT array_agg(p.proname || ' ' || p.pronargdefaults ORDER BY p.proname) FROM pg_proc p
      WHERE p.pronamespace = 'eventstore'::regnamespace AND p.proname IN ('create_consumer', 'poll')),
    ARRAY['create_consumer 6', 'poll 2'],
    'create_consumer''s members and poll''s member have defaults (create_consumer(name, topics) and poll(consumer) still work)'
);
-- the internal functions of members
SELECT has_function('eventstore', f, a, format('%s(%s) exists', f, array_to_string(a, ', ')))
  FROM (VALUES ('member_of', ARRAY['text', 'uuid', 'integer']),
               ('check_member_count', ARRAY['integer']),
               ('start_members', ARRAY['text', 'integer', 'integer', 'bigint', 'pg_snapshot', 'bigint', 'bigint', 'bigint']),
               ('window_floor', '{}'::text[]),
               ('register_consumer', ARRAY['text', 'text[]', 'regprocedure', 'integer', 'integer', 'regrole', 'text[]', 'integer']),
               ('member_undelivered', ARRAY['eventstore.members']),
               ('member_is_undelivered', ARRAY['eventstore.members', 'bigint', 'xid8']),
               ('is_undelivered', ARRAY['eventstore.consumers', 'text', 'uuid', 'bigint', 'xid8']),
               ('wait_for_batches', ARRAY['text']),
               ('member_status', ARRAY['text', 'integer', 'integer'])) AS v(f, a);
SELECT function_returns('eventstore', f, a, r, format('%s returns %s', f, r))
  FROM (VALUES ('member_of', ARRAY['text', 'uuid', 'integer'], 'integer'),
               ('check_member_count', ARRAY['integer'], 'void'),
               ('start_members', ARRAY['text', 'integer', 'integer', 'bigint', 'pg_snapshot', 'bigint', 'bigint', 'bigint'], 'void'),
               ('window_floor', '{}'::text[], 'bigint'),
               ('register_consumer', ARRAY['text', 'text[]', 'regprocedure', 'integer', 'integer', 'regrole', 'text[]', 'integer'], 'void'),
               ('member_undelivered', ARRAY['eventstore.members'], 'record'),
               ('member_is_undelivered', ARRAY['eventstore.members', 'bigint', 'xid8'], 'boolean'),
               ('is_undelivered', ARRAY['eventstore.consumers', 'text', 'uuid', 'bigint', 'xid8'], 'boolean'),
               ('wait_for_batches', ARRAY['text'], 'void')) AS v(f, a, r);
-- member_of decides where an event goes: the same on every call (an index
-- or a replica computes the same member)
SELECT is(
    (SELECT l.lanname || ' ' || p.provolatile::text || ' ' || p.proparallel::text FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
      WHERE p.oid = 'eventstore.member_of(text,uuid,integer)'::regprocedure),
    'c i s',
    'member_of is an IMMUTABLE, PARALLEL SAFE C function'
);

------------------------------------------------------------------------------
-- SECURITY DEFINER functions of the consumer API and their search_path
-- (the exact list for the whole schema is in privileges.sql)
------------------------------------------------------------------------------

SELECT is_definer('eventstore', f, a, format('%s is SECURITY DEFINER', f))
  FROM (VALUES ('drop_consumer', ARRAY['text']),
               ('reset_consumer', ARRAY['text', 'bigint']),
               ('set_consumer_members', ARRAY['text', 'integer']),
               ('replay_parked', ARRAY['text', 'uuid']),
               ('set_topic_version', ARRAY['text', 'text']),
               ('undelivered', ARRAY['text']),
               ('member_status', ARRAY['text', 'integer', 'integer'])) AS v(f, a);
-- The entry points that check the caller run as the caller (a SECURITY
-- DEFINER function would only know its owner); the internal functions
-- they call as the owner are not SECURITY DEFINER either.
SELECT isnt_definer('eventstore', f, a, format('%s is not SECURITY DEFINER', f))
  FROM (VALUES ('create_consumer', ARRAY['text', 'text[]', 'regprocedure', 'integer', 'integer', 'regrole', 'text[]', 'integer']),
               ('create_upcaster', ARRAY['text', 'integer', 'integer', 'regprocedure']),
               ('poll', ARRAY['text', 'integer', 'integer']),
               ('ack', ARRAY['text', 'bigint']),
               ('nack', ARRAY['text', 'bigint', 'text']),
               ('run_consumer', ARRAY['text', 'integer']),
               ('upcast', ARRAY['eventstore.event']),
               ('derived_id', ARRAY['uuid', 'text']),
               ('register_consumer', ARRAY['text', 'text[]', 'regprocedure', 'integer', 'integer', 'regrole', 'text[]', 'integer']),
               ('register_upcaster', ARRAY['text', 'integer', 'integer', 'regprocedure', 'regrole']),
               ('lock_consumer', ARRAY['text', 'text']),
               -- undelivered() (SECURITY DEFINER) sums its members' through it
               ('member_undelivered', ARRAY['eventstore.members'])) AS v(f, a);
SELECT is(
    (SELECT array_agg(p.proname || ' ' || l.lanname ORDER BY p.proname)
       FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
      WHERE p.pronamespace = 'eventstore'::regnamespace
        AND p.proname IN ('create_consumer', 'create_upcaster', 'poll', 'ack', 'nack', 'run_consumer', 'upcast')),
    ARRAY['ack c', 'create_consumer c', 'create_upcaster c', 'nack c', 'poll c', 'run_consumer c', 'upcast c'],
    'create_consumer, create_upcaster, poll, ack, nack, run_consumer and upcast are C functions (they switch to the owner themselves)'
);
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text || ' ' || coalesce(p.proconfig::text, 'NULL') ORDER BY p.oid::regprocedure::text)
       FROM pg_proc p
      WHERE p.pronamespace = 'eventstore'::regnamespace AND p.prosecdef
        AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)),
    NULL,
    'every SECURITY DEFINER function of eventstore sets search_path = pg_catalog, pg_temp'
);
-- undelivered() sums member_undelivered() over the consumer's members
-- (1.3): the SECURITY DEFINER function sets nothing else
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text || ' ' || c ORDER BY p.oid::regprocedure::text, c)
       FROM pg_proc p, unnest(p.proconfig) AS c
      WHERE p.pronamespace = 'eventstore'::regnamespace AND p.prosecdef
        AND c <> 'search_path=pg_catalog, pg_temp'),
    NULL,
    'no SECURITY DEFINER function of eventstore has a setting but search_path = pg_catalog, pg_temp'
);
-- member_undelivered() finds a member's events through the BRIN index on xid
SELECT is(
    (SELECT p.proconfig FROM pg_proc p
      WHERE p.oid = 'eventstore.member_undelivered(eventstore.members)'::regprocedure),
    ARRAY['search_path=pg_catalog, pg_temp', 'enable_seqscan=off'],
    'member_undelivered sets search_path = pg_catalog, pg_temp and enable_seqscan = off'
);
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text || ' ' || c ORDER BY p.oid::regprocedure::text, c)
       FROM pg_proc p, unnest(p.proconfig) AS c
      WHERE p.pronamespace = 'eventstore'::regnamespace
        AND c <> 'search_path=pg_catalog, pg_temp'),
    ARRAY['eventstore.member_undelivered(eventstore.members) enable_seqscan=off'],
    'the only other setting of a function of eventstore is enable_seqscan = off on member_undelivered'
);

------------------------------------------------------------------------------
-- Privileges in the catalogue: EXECUTE on the consumer API
------------------------------------------------------------------------------

-- Each role gets exactly its functions (README.md, "Roles and privileges").
SELECT function_privs_are('eventstore', f, a, r,
                          CASE WHEN r = ANY (granted) THEN ARRAY['EXECUTE'] ELSE '{}' END::name[])
  FROM (VALUES ('create_consumer', ARRAY['text', 'text[]', 'regprocedure', 'integer', 'integer', 'regrole', 'text[]', 'integer'], ARRAY['eventstore_admin']),
               ('drop_consumer', ARRAY['text'], ARRAY['eventstore_admin']),
               ('reset_consumer', ARRAY['text', 'bigint'], ARRAY['eventstore_admin']),
               ('set_consumer_members', ARRAY['text', 'integer'], ARRAY['eventstore_admin']),
               ('run_consumer', ARRAY['text', 'integer'], ARRAY['eventstore_admin']),
               ('replay_parked', ARRAY['text', 'uuid'], ARRAY['eventstore_admin']),
               ('create_upcaster', ARRAY['text', 'integer', 'integer', 'regprocedure'], ARRAY['eventstore_admin']),
               ('set_topic_version', ARRAY['text', 'text'], ARRAY['eventstore_admin']),
               ('poll', ARRAY['text', 'integer', 'integer'], ARRAY['eventstore_reader']),
               ('ack', ARRAY['text', 'bigint'], ARRAY['eventstore_reader']),
               ('nack', ARRAY['text', 'bigint', 'text'], ARRAY['eventstore_reader']),
               ('upcast', ARRAY['eventstore.event'], ARRAY['eventstore_reader']),
               ('derived_id', ARRAY['uuid', 'text'], ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin']),
               -- the consumer_status view calls it as its user
               ('undelivered', ARRAY['text'], ARRAY['eventstore_reader', 'eventstore_admin']),
               -- and consumer_members this one
               ('member_status', ARRAY['text', 'integer', 'integer'], ARRAY['eventstore_reader', 'eventstore_admin'])
       ) AS v(f, a, granted)
 CROSS JOIN unnest(ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin', 'public']) AS r
 ORDER BY f, r;

-- The same as one matrix over every function of the schema, through
-- has_function_privilege (so membership and PUBLIC count), now and later.
SELECT set_eq(
    $$SELECT p.proname || ' ' || r
        FROM pg_proc p
       CROSS JOIN unnest(ARRAY['public', 'eventstore_writer', 'eventstore_reader', 'eventstore_admin']) AS r
       WHERE p.pronamespace = 'eventstore'::regnamespace
         AND has_function_privilege(r, p.oid, 'EXECUTE')$$,
    ARRAY['validate eventstore_writer', 'validate eventstore_reader', 'validate eventstore_admin',
          'is_valid eventstore_writer', 'is_valid eventstore_reader', 'is_valid eventstore_admin',
          'derived_id eventstore_writer', 'derived_id eventstore_reader', 'derived_id eventstore_admin',
          'append eventstore_writer', 'append_batch eventstore_writer',
          'read eventstore_reader', 'read_stream eventstore_reader', 'get eventstore_reader',
          'stream_version eventstore_reader', 'last_event eventstore_reader',
          'load_snapshot eventstore_reader', 'save_snapshot eventstore_writer',
          'safe_position eventstore_reader', 'read_correlated eventstore_reader',
          'close_stream eventstore_writer', 'close_stream eventstore_admin',
          'poll eventstore_reader', 'ack eventstore_reader', 'nack eventstore_reader',
          'upcast eventstore_reader', 'undelivered eventstore_reader',
          'create_topic eventstore_admin', 'set_topic_version eventstore_admin',
          'grant_topic eventstore_admin', 'revoke_topic eventstore_admin',
          'set_retention eventstore_admin', 'purge_expired eventstore_admin',
          'set_cleanup_retention eventstore_admin', 'set_derived_id_key eventstore_admin',
          'publish_archive eventstore_admin', 'erase_stream eventstore_admin',
          'truncate_stream eventstore_admin', 'set_stream_max_count eventstore_admin',
          'create_consumer eventstore_admin', 'drop_consumer eventstore_admin',
          'reset_consumer eventstore_admin', 'set_consumer_members eventstore_admin',
          'run_consumer eventstore_admin',
          'replay_parked eventstore_admin', 'create_upcaster eventstore_admin',
          'undelivered eventstore_admin',
          'member_status eventstore_reader', 'member_status eventstore_admin',
          -- crypto-shredding (checked in detail by privileges.sql)
          'protect_fields eventstore_admin', 'forget_subject eventstore_admin',
          'unprotect eventstore_reader',
          -- statistics
          'stats_counters eventstore_reader', 'stats_counters eventstore_admin',
          'stats_reset eventstore_admin'],
    'EXECUTE on the functions of eventstore: exactly the listed (function, role) pairs, nothing for PUBLIC'
);

-- internal helpers: nobody but the owner
SELECT is(
    (SELECT array_agg(DISTINCT p.proname::text ORDER BY p.proname::text) FROM pg_proc p
      WHERE p.pronamespace = 'eventstore'::regnamespace
        AND p.proname IN ('lock_consumer', 'check_consumer_name', 'window_snapshot',
                          'consumers_changed', 'register_consumer', 'register_upcaster',
                          'check_read_args', 'topics_changed', 'member_of', 'check_member_count',
                          'start_members', 'window_floor', 'member_undelivered', 'member_is_undelivered',
                          'is_undelivered', 'wait_for_batches')),
    ARRAY['check_consumer_name', 'check_member_count', 'check_read_args', 'consumers_changed',
          'is_undelivered', 'lock_consumer', 'member_is_undelivered', 'member_of', 'member_undelivered',
          'register_consumer', 'register_upcaster', 'start_members', 'topics_changed', 'wait_for_batches',
          'window_floor', 'window_snapshot'],
    'the sixteen internal helpers exist (so the next test is not vacuous)'
);
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text || ' -> ' || r ORDER BY 1)
       FROM pg_proc p
       CROSS JOIN unnest(ARRAY['public', 'eventstore_writer', 'eventstore_reader', 'eventstore_admin']) AS r
      WHERE p.pronamespace = 'eventstore'::regnamespace
        AND p.proname IN ('lock_consumer', 'check_consumer_name', 'window_snapshot',
                          'consumers_changed', 'register_consumer', 'register_upcaster',
                          'check_read_args', 'topics_changed', 'member_of', 'check_member_count',
                          'start_members', 'window_floor', 'member_undelivered', 'member_is_undelivered',
                          'is_undelivered', 'wait_for_batches')
        AND has_function_privilege(r, p.oid, 'EXECUTE')),
    NULL,
    'lock_consumer, check_consumer_name, window_snapshot, consumers_changed, register_consumer, '
    'register_upcaster, check_read_args, topics_changed, member_of, check_member_count, start_members, '
    'window_floor, member_undelivered, member_is_undelivered, is_undelivered and wait_for_batches are executable by none '
    'of the roles nor PUBLIC'
);
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text ORDER BY 1)
       FROM pg_proc p
      WHERE p.pronamespace = 'eventstore'::regnamespace AND p.prosecdef
        AND p.proname IN ('lock_consumer', 'check_consumer_name', 'window_snapshot',
                          'consumers_changed', 'register_consumer', 'register_upcaster',
                          'check_read_args', 'topics_changed', 'member_of', 'check_member_count',
                          'start_members', 'window_floor', 'member_undelivered', 'member_is_undelivered',
                          'is_undelivered', 'wait_for_batches')),
    NULL,
    'none of the internal helpers is SECURITY DEFINER'
);

------------------------------------------------------------------------------
-- Privileges in the catalogue: tables, view, type
------------------------------------------------------------------------------

-- consumers: nobody (consumer_status is the way to look at them)
SELECT table_privs_are('eventstore', 'consumers', r, '{}'::name[])
  FROM unnest(ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin', 'public']) AS r;
-- members: nobody (consumer_members is the way to look at them)
SELECT table_privs_are('eventstore', 'members', r, '{}'::name[])
  FROM unnest(ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin', 'public']) AS r;
-- parked, upcasters, consumer_status, consumer_members: SELECT for reader and admin only
SELECT table_privs_are('eventstore', t, r,
                       CASE WHEN r IN ('eventstore_reader', 'eventstore_admin') THEN ARRAY['SELECT'] ELSE '{}' END::name[])
  FROM unnest(ARRAY['parked', 'upcasters', 'consumer_status', 'consumer_members']) AS t
 CROSS JOIN unnest(ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin', 'public']) AS r
 ORDER BY t, r;
-- the sequence of batch ids: nobody (poll takes its numbers as the owner)
SELECT sequence_privs_are('eventstore', 'batch_ids', r, '{}'::name[])
  FROM unnest(ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin', 'public']) AS r;

SELECT is(
    (SELECT array_agg(t || ' ' || r || ' ' || p ORDER BY 1)
       FROM unnest(ARRAY['consumers', 'members', 'parked', 'upcasters', 'consumer_status', 'consumer_members']) AS t
       CROSS JOIN unnest(ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin']) AS r
       CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p
      WHERE has_table_privilege(r, ('eventstore.' || t)::regclass, p)),
    NULL,
    'no eventstore role may write to consumers, members, parked, upcasters, consumer_status or consumer_members directly'
);

SELECT is(has_type_privilege('eventstore_reader', 'eventstore.delivery', 'USAGE'), true,
    'eventstore_reader may use type eventstore.delivery');
SELECT is(has_type_privilege('eventstore_admin', 'eventstore.delivery', 'USAGE'), true,
    'eventstore_admin may use type eventstore.delivery');
SELECT is(
    (SELECT EXISTS (SELECT FROM pg_type t, aclexplode(t.typacl) a
                     WHERE t.oid = 'eventstore.delivery'::regtype AND a.grantee = 0)
            OR (SELECT typacl IS NULL FROM pg_type WHERE oid = 'eventstore.delivery'::regtype)),
    false,
    'PUBLIC has no privilege on type eventstore.delivery'
);

------------------------------------------------------------------------------
-- Behaviour: test roles, data and consumers
------------------------------------------------------------------------------

CREATE ROLE es_ctest_writer NOLOGIN IN ROLE eventstore_writer;
-- the role of the outside consumers es_out_*: its members may take their batches
CREATE ROLE es_ctest_outside NOLOGIN;
CREATE ROLE es_ctest_reader NOLOGIN IN ROLE eventstore_reader, es_ctest_outside;
-- a reader that is not a member of es_ctest_outside
CREATE ROLE es_ctest_reader2 NOLOGIN IN ROLE eventstore_reader;
CREATE ROLE es_ctest_admin NOLOGIN IN ROLE eventstore_admin;
-- an operator: admin and reader, a member of no consumer's role
CREATE ROLE es_ctest_operator NOLOGIN IN ROLE eventstore_admin, eventstore_reader;
-- a login admin, for SET SESSION AUTHORIZATION
CREATE ROLE es_ctest_admin_login LOGIN IN ROLE eventstore_admin;
-- a role the login admin may run consumers as, and one it may not
CREATE ROLE es_ctest_runner NOLOGIN ROLE es_ctest_admin_login;
CREATE ROLE es_ctest_stranger NOLOGIN;
-- a fresh login role with no eventstore role
CREATE ROLE es_ctest_login LOGIN;
-- mallory: an admin with a schema of her own, where she writes handlers
CREATE ROLE es_ctest_mallory NOLOGIN IN ROLE eventstore_admin;
CREATE SCHEMA es_ctest_mallory AUTHORIZATION es_ctest_mallory;

SELECT is((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), true,
    'setup: the test runs as a superuser (the owner of the extension)');
SELECT is(
    (SELECT array_agg(r ORDER BY r) FROM unnest(ARRAY['es_ctest_runner', 'es_ctest_stranger',
                                                      'eventstore_admin', 'eventstore_reader',
                                                      'eventstore_writer']) AS r
      WHERE pg_has_role('es_ctest_admin_login', r, 'MEMBER')),
    ARRAY['es_ctest_runner', 'eventstore_admin'],
    'setup: es_ctest_admin_login is a member of eventstore_admin and es_ctest_runner only'
);
SELECT is(
    (SELECT array_agg(u || ' in ' || r ORDER BY u, r)
       FROM unnest(ARRAY['es_ctest_reader', 'es_ctest_reader2', 'es_ctest_admin', 'es_ctest_operator',
                         'es_ctest_admin_login', 'es_ctest_mallory']) AS u
      CROSS JOIN unnest(ARRAY['es_ctest_outside', 'es_ctest_runner', 'es_ctest_mallory']) AS r
      WHERE u <> r AND pg_has_role(u, r, 'MEMBER')),
    ARRAY['es_ctest_admin_login in es_ctest_runner', 'es_ctest_reader in es_ctest_outside'],
    'setup: only es_ctest_reader is a member of es_ctest_outside, only es_ctest_admin_login of es_ctest_runner, '
    'nobody of es_ctest_mallory'
);

-- Every handler call, as whom, and who upcast the event it got.  The temp
-- table is reachable by any role of this session.
CREATE TEMP TABLE es_ctest_calls (event_id uuid, as_user name, upcast_by text);
GRANT INSERT, SELECT ON es_ctest_calls TO PUBLIC;
-- The handler also writes to a table by its unqualified name, as handlers
-- commonly do (see the admin section and the tests at the end).
CREATE TABLE public.es_ctest_audit (id uuid);
GRANT INSERT ON public.es_ctest_audit TO es_ctest_runner;
CREATE FUNCTION public.es_ctest_handler(e eventstore.event) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO pg_temp.es_ctest_calls VALUES (e.id, current_user, e.envelope #>> '{data,upcast_by}');
    INSERT INTO es_ctest_audit VALUES (e.id);
$$;
-- a handler the consumers' roles may not execute
CREATE FUNCTION public.es_ctest_private_handler(e eventstore.event) RETURNS void
LANGUAGE sql AS $$ INSERT INTO pg_temp.es_ctest_calls VALUES (e.id, current_user, 'private handler') $$;
REVOKE EXECUTE ON FUNCTION public.es_ctest_private_handler(eventstore.event) FROM PUBLIC;
-- The upcaster from 1 to 2 writes who ran it into the event's data.
CREATE FUNCTION public.es_ctest_upcaster(envelope jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_set(jsonb_set(envelope, '{version}', '"2.0"'), '{data,upcast_by}', to_jsonb(current_user::text))
$$;
-- The upcaster from 2 to 3 too, but only the login admin may execute it.
CREATE FUNCTION public.es_ctest_upcaster3(envelope jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_set(jsonb_set(envelope, '{version}', '"3.0"'), '{data,upcast3_by}', to_jsonb(current_user::text))
$$;
REVOKE EXECUTE ON FUNCTION public.es_ctest_upcaster3(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.es_ctest_upcaster3(jsonb) TO es_ctest_admin_login;
-- an upcaster-shaped function that the admins may not execute
CREATE FUNCTION public.es_ctest_private(envelope jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT envelope $$;
REVOKE EXECUTE ON FUNCTION public.es_ctest_private(jsonb) FROM PUBLIC;
-- Code of one role found running as another one (see the tests at the end).
CREATE TABLE public.es_ctest_escalations (via text, as_user name);
GRANT INSERT ON public.es_ctest_escalations TO PUBLIC;

SELECT lives_ok($$SELECT eventstore.create_topic('es_cons', '1.0')$$, 'setup: the owner creates topic es_cons');
SELECT lives_ok(
    $$SELECT eventstore.append('es_cons', format(
        '{"id": "00000000-0000-4000-8000-0000000000%s", "type": "new", "version": "1.0",
          "data": {}, "metadata": {"source": "test/consumer_privileges", "time": "2024-01-01T00:00:00Z"}}',
        n)::jsonb)
        FROM unnest(ARRAY['01', '02', '03', '04']) AS n$$,
    'setup: the owner appends four events');
SELECT lives_ok(
    $$SELECT eventstore.grant_topic('es_cons', 'read', r::regrole)
        FROM unnest(ARRAY['es_ctest_outside', 'es_ctest_runner', 'es_ctest_mallory']) AS r$$,
    'setup: the owner grants read on es_cons to es_ctest_outside, es_ctest_runner (and so to its member '
    'es_ctest_admin_login) and es_ctest_mallory, which are not readers');
SELECT lives_ok(
    $$SELECT eventstore.create_consumer('es_out_ack', ARRAY['es_cons'], run_as => 'es_ctest_outside'),
             eventstore.create_consumer('es_out_nack', ARRAY['es_cons'], run_as => 'es_ctest_outside'),
             eventstore.create_consumer('es_in', ARRAY['es_cons'], 'public.es_ctest_handler(eventstore.event)',
                                        run_as => 'es_ctest_runner')$$,
    'setup: the owner creates outside consumers es_out_ack, es_out_nack run as es_ctest_outside '
    'and in-database consumer es_in run as es_ctest_runner');
-- Fixture (see the top): parked events, the first two marked for replay.
INSERT INTO eventstore.parked (consumer, event_id, position, topic, attempts, error, replay)
SELECT c, e.id, e.position, e.topic, 5, 'fixture', c <> 'es_in'
  FROM (VALUES ('es_out_ack', '00000000-0000-4000-8000-000000000001'::uuid),
               ('es_out_nack', '00000000-0000-4000-8000-000000000002'),
               ('es_in', '00000000-0000-4000-8000-000000000003')) AS v(c, id)
  JOIN eventstore.events e ON e.id = v.id;

------------------------------------------------------------------------------
-- Behaviour: PUBLIC and a fresh login role can do nothing with consumers
------------------------------------------------------------------------------

SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text || ' -> ' || r ORDER BY 1)
       FROM pg_proc p
       CROSS JOIN unnest(ARRAY['public', 'es_ctest_login']) AS r
      WHERE p.pronamespace = 'eventstore'::regnamespace
        AND has_function_privilege(r, p.oid, 'EXECUTE')),
    NULL,
    'neither PUBLIC nor a fresh login role may execute any function of eventstore'
);
SELECT is(
    (SELECT array_agg(t || ' -> ' || r ORDER BY 1)
       FROM unnest(ARRAY['consumers', 'members', 'parked', 'upcasters', 'consumer_status', 'consumer_members']) AS t
       CROSS JOIN unnest(ARRAY['public', 'es_ctest_login']) AS r
      WHERE has_table_privilege(r, ('eventstore.' || t)::regclass, 'SELECT')),
    NULL,
    'neither PUBLIC nor a fresh login role may SELECT consumers, members, parked, upcasters, consumer_status '
    'or consumer_members'
);

SET SESSION AUTHORIZATION es_ctest_login;

SELECT is(session_user::text || ' ' || current_user::text, 'es_ctest_login es_ctest_login',
    'now the fresh login role, by SET SESSION AUTHORIZATION');
SELECT throws_ok($$SELECT eventstore.create_consumer('es_login', ARRAY['es_cons'])$$, '42501', NULL,
    'a fresh login role cannot create_consumer');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_out_ack')$$, '42501', NULL, 'a fresh login role cannot poll');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_out_ack', 100, 0)$$, '42501', NULL,
    'a fresh login role cannot poll a member');
SELECT throws_ok($$SELECT eventstore.ack('es_out_ack', 1)$$, '42501', NULL, 'a fresh login role cannot ack');
SELECT throws_ok($$SELECT eventstore.nack('es_out_ack', 1, 'no')$$, '42501', NULL, 'a fresh login role cannot nack');
SELECT throws_ok($$SELECT eventstore.run_consumer('es_in')$$, '42501', NULL, 'a fresh login role cannot run_consumer');
SELECT throws_ok($$SELECT eventstore.drop_consumer('es_out_ack')$$, '42501', NULL, 'a fresh login role cannot drop_consumer');
SELECT throws_ok($$SELECT eventstore.set_consumer_members('es_out_ack', 2)$$, '42501', NULL,
    'a fresh login role cannot set_consumer_members');
SELECT throws_ok($$SELECT eventstore.derived_id('00000000-0000-4000-8000-000000000001', 'x')$$, '42501', NULL,
    'a fresh login role cannot derived_id');
SELECT throws_ok($$SELECT * FROM eventstore.undelivered('es_out_ack')$$, '42501', NULL,
    'a fresh login role cannot call undelivered');
SELECT throws_ok($$SELECT * FROM eventstore.consumers$$, '42501', NULL, 'a fresh login role cannot SELECT consumers');
SELECT throws_ok($$SELECT * FROM eventstore.members$$, '42501', NULL, 'a fresh login role cannot SELECT members');
SELECT throws_ok($$SELECT * FROM eventstore.parked$$, '42501', NULL, 'a fresh login role cannot SELECT parked');
SELECT throws_ok($$SELECT * FROM eventstore.upcasters$$, '42501', NULL, 'a fresh login role cannot SELECT upcasters');
SELECT throws_ok($$SELECT * FROM eventstore.consumer_status$$, '42501', NULL,
    'a fresh login role cannot SELECT consumer_status');
SELECT throws_ok($$SELECT * FROM eventstore.consumer_members$$, '42501', NULL,
    'a fresh login role cannot SELECT consumer_members');

RESET SESSION AUTHORIZATION;

------------------------------------------------------------------------------
-- Behaviour: writer
------------------------------------------------------------------------------

SET LOCAL ROLE es_ctest_writer;

SELECT lives_ok($$SELECT eventstore.derived_id('00000000-0000-4000-8000-000000000001', 'x')$$, 'writer can derived_id');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_out_ack')$$, '42501', NULL, 'writer cannot poll');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_out_ack', 100, 0)$$, '42501', NULL, 'writer cannot poll a member');
SELECT throws_ok($$SELECT eventstore.ack('es_out_ack', 1)$$, '42501', NULL, 'writer cannot ack');
SELECT throws_ok($$SELECT eventstore.nack('es_out_ack', 1, 'no')$$, '42501', NULL, 'writer cannot nack');
SELECT throws_ok($$SELECT eventstore.create_consumer('es_w', ARRAY['es_cons'])$$, '42501', NULL, 'writer cannot create_consumer');
SELECT throws_ok($$SELECT eventstore.run_consumer('es_in')$$, '42501', NULL, 'writer cannot run_consumer');
SELECT throws_ok($$SELECT eventstore.set_consumer_members('es_out_ack', 2)$$, '42501', NULL,
    'writer cannot set_consumer_members');
SELECT throws_ok($$SELECT eventstore.upcast(eventstore.get('00000000-0000-4000-8000-000000000001'))$$, '42501', NULL,
    'writer cannot upcast (nor get)');
SELECT throws_ok($$SELECT * FROM eventstore.undelivered('es_out_ack')$$, '42501', NULL, 'writer cannot call undelivered');
SELECT throws_ok($$SELECT * FROM eventstore.consumer_status$$, '42501', NULL, 'writer cannot SELECT consumer_status');
SELECT throws_ok($$SELECT * FROM eventstore.consumer_members$$, '42501', NULL, 'writer cannot SELECT consumer_members');
SELECT throws_ok($$SELECT * FROM eventstore.parked$$, '42501', NULL, 'writer cannot SELECT parked');
SELECT throws_ok($$SELECT * FROM eventstore.upcasters$$, '42501', NULL, 'writer cannot SELECT upcasters');
SELECT throws_ok($$UPDATE eventstore.consumers SET members = 1$$, '42501', NULL, 'writer cannot UPDATE consumers');
SELECT throws_ok($$UPDATE eventstore.members SET position = 0$$, '42501', NULL, 'writer cannot UPDATE members');

RESET ROLE;

------------------------------------------------------------------------------
-- Behaviour: reader, a member of es_ctest_outside (the outside consumers' role)
------------------------------------------------------------------------------

SET LOCAL ROLE es_ctest_reader;

SELECT is(
    (SELECT array_agg(id::text || ' batch ' || batch_id || ' attempt ' || attempt || ' ' || (envelope->>'id'))
       FROM eventstore.poll('es_out_ack')),
    ARRAY['00000000-0000-4000-8000-000000000001 batch 1 attempt 1 00000000-0000-4000-8000-000000000001'],
    'a reader that is a member of the consumer''s role can poll it: its replayed event, batch 1, attempt 1'
);
SELECT lives_ok($$SELECT eventstore.ack('es_out_ack', 1)$$, 'a reader member of the consumer''s role can ack the batch');
-- batch ids come from one sequence, eventstore.batch_ids (1.3): the other
-- consumer's first batch is batch 2
SELECT is(
    (SELECT array_agg(id::text || ' batch ' || batch_id || ' attempt ' || attempt || ' member ' || member)
       FROM eventstore.poll('es_out_nack')),
    ARRAY['00000000-0000-4000-8000-000000000002 batch 2 attempt 1 member 0'],
    'a reader member of the consumer''s role can poll the other outside consumer: batch 2, of its only member, 0'
);
SELECT lives_ok($$SELECT eventstore.nack('es_out_nack', 2, 'reader says no')$$,
    'a reader member of the consumer''s role can nack the batch');
SELECT results_eq(
    $$SELECT name COLLATE "default", kind, attempts, parked, last_error, batch_id, members
        FROM eventstore.consumer_status ORDER BY name$$,
    $$VALUES ('es_in'::text, 'in-database'::text, 0, 1::bigint, NULL::text, 0::bigint, 1),
             ('es_out_ack', 'outside', 0, 0, NULL, 1, 1),
             ('es_out_nack', 'outside', 1, 1, 'reader says no', 2, 1)$$,
    'reader can SELECT consumer_status: the ack took the parked event away, the nack counted an attempt'
);
SELECT lives_ok($$SELECT * FROM eventstore.consumer_members$$, 'reader can SELECT consumer_members');
SELECT is((SELECT count(*) FROM eventstore.poll('es_out_ack', 100, 0)), 0::bigint,
    'a reader member of the consumer''s role can poll a member of it (member 0: nothing left after the ack)');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_out_ack', 100, 1)$$, '22023',
    'consumer "es_out_ack" has no member 1',
    'poll of a member the consumer does not have: 22023');
SELECT is((SELECT count(*) FROM eventstore.parked), 2::bigint, 'reader can SELECT parked');
SELECT is((SELECT count(*) FROM eventstore.upcasters), 0::bigint, 'reader can SELECT upcasters');
SELECT is(
    (eventstore.upcast(eventstore.get('00000000-0000-4000-8000-000000000001'))).envelope->>'version',
    '1.0',
    'reader can upcast (no upcaster yet: the event as stored)'
);
SELECT lives_ok($$SELECT eventstore.derived_id('00000000-0000-4000-8000-000000000001', 'x')$$, 'reader can derived_id');
SELECT is((SELECT events IS NOT NULL FROM eventstore.undelivered('es_out_nack')), true,
    'reader can call undelivered with a consumer''s name');
SELECT is((SELECT array_agg(coalesce(events::text, 'NULL') || ' ' || coalesce(oldest::text, 'NULL'))
             FROM eventstore.undelivered('es_no_such_consumer')),
    ARRAY['NULL NULL'],
    'undelivered of a consumer that does not exist tells nothing (NULL events, NULL oldest)');
SELECT throws_ok($$SELECT eventstore.create_consumer('es_r', ARRAY['es_cons'])$$, '42501', NULL, 'reader cannot create_consumer');
SELECT throws_ok($$SELECT eventstore.drop_consumer('es_out_ack')$$, '42501', NULL, 'reader cannot drop_consumer');
SELECT throws_ok($$SELECT eventstore.reset_consumer('es_out_ack')$$, '42501', NULL, 'reader cannot reset_consumer');
SELECT throws_ok($$SELECT eventstore.run_consumer('es_in')$$, '42501', NULL, 'reader cannot run_consumer');
SELECT throws_ok($$SELECT eventstore.replay_parked('es_in', '00000000-0000-4000-8000-000000000003')$$, '42501', NULL,
    'reader cannot replay_parked');
SELECT throws_ok($$SELECT eventstore.create_upcaster('es_cons', 1, 2, 'public.es_ctest_upcaster(jsonb)')$$, '42501', NULL,
    'reader cannot create_upcaster');
SELECT throws_ok($$SELECT eventstore.set_topic_version('es_cons', '2.0')$$, '42501', NULL, 'reader cannot set_topic_version');
SELECT throws_ok($$SELECT eventstore.set_consumer_members('es_out_ack', 2)$$, '42501', NULL,
    'reader cannot set_consumer_members');
SELECT throws_ok($$SELECT * FROM eventstore.consumers$$, '42501', NULL, 'reader cannot SELECT consumers directly');
SELECT throws_ok($$SELECT * FROM eventstore.members$$, '42501', NULL, 'reader cannot SELECT members directly');
SELECT throws_ok($$UPDATE eventstore.consumers SET members = 1$$, '42501', NULL, 'reader cannot UPDATE consumers');
SELECT throws_ok($$UPDATE eventstore.members SET position = 0$$, '42501', NULL, 'reader cannot UPDATE members');
SELECT throws_ok($$UPDATE eventstore.parked SET replay = true$$, '42501', NULL, 'reader cannot UPDATE parked');
SELECT throws_ok($$DELETE FROM eventstore.parked$$, '42501', NULL, 'reader cannot DELETE parked');
SELECT throws_ok(
    $$INSERT INTO eventstore.upcasters (topic, from_major, to_major, fn)
      VALUES ('es_cons', 1, 2, 'public.es_ctest_upcaster(jsonb)')$$,
    '42501', NULL, 'reader cannot INSERT into upcasters directly');
SELECT throws_ok($$SELECT eventstore.lock_consumer('es_out_ack')$$, '42501', NULL, 'reader cannot call the internal lock_consumer');

RESET ROLE;

------------------------------------------------------------------------------
-- Behaviour: a reader that is not a member of the consumer's role
------------------------------------------------------------------------------

SET LOCAL ROLE es_ctest_reader2;

SELECT throws_ok($$SELECT * FROM eventstore.poll('es_out_ack')$$, '42501',
    'permission denied to poll consumer "es_out_ack"',
    'a reader that is not a member of the consumer''s role cannot poll it');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_out_ack', 100, 0)$$, '42501',
    'permission denied to poll consumer "es_out_ack"',
    'a reader that is not a member of the consumer''s role cannot poll a member of it');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_out_ack', 100, 1)$$, '42501',
    'permission denied to poll consumer "es_out_ack"',
    'nor learn how many members it has (a member it does not have: 42501, not 22023)');
SELECT throws_ok($$SELECT eventstore.ack('es_out_ack', 1)$$, '42501',
    'permission denied to ack a batch of consumer "es_out_ack"',
    'a reader that is not a member of the consumer''s role cannot ack its batch');
SELECT throws_ok($$SELECT eventstore.nack('es_out_nack', 2, 'reader2 says no')$$, '42501',
    'permission denied to nack a batch of consumer "es_out_nack"',
    'a reader that is not a member of the consumer''s role cannot nack its batch');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_no_such_consumer')$$, '42704', NULL,
    'poll of a consumer that does not exist: 42704');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_no_such_consumer', 100, 0)$$, '42704', NULL,
    'poll of a member of a consumer that does not exist: 42704');

RESET ROLE;

SELECT results_eq(
    $$SELECT name COLLATE "default", attempts, last_error, batch_id, handled
        FROM eventstore.consumer_status WHERE name LIKE 'es\_out\_%' ORDER BY name$$,
    $$VALUES ('es_out_ack'::text, 0, NULL::text, 1::bigint, 1::bigint),
             ('es_out_nack', 1, 'reader says no', 2, 0)$$,
    'the refused poll, ack and nack changed nothing'
);
-- the same, member by member
SELECT results_eq(
    $$SELECT consumer COLLATE "default", member, members, generation, retiring, attempts, parked, last_error,
             batch_id, handled
        FROM eventstore.consumer_members WHERE consumer LIKE 'es\_out\_%' ORDER BY consumer, member$$,
    $$VALUES ('es_out_ack'::text, 0, 1, 0, false, 0, 0::bigint, NULL::text, 1::bigint, 1::bigint),
             ('es_out_nack', 0, 1, 0, false, 1, 1, 'reader says no', 2, 0)$$,
    'consumer_members: each outside consumer has its one member 0, with the attempt, error and batch of the consumer'
);

------------------------------------------------------------------------------
-- Behaviour: admin, under SET ROLE (a member of no consumer's role)
------------------------------------------------------------------------------

-- the owner's (a superuser's) own in-database consumer, with a replayed event
SELECT lives_ok(
    $$SELECT eventstore.create_consumer('es_super_in', ARRAY['es_cons'], 'public.es_ctest_handler(eventstore.event)')$$,
    'setup: the owner creates in-database consumer es_super_in without run_as');
SELECT is((SELECT run_as::text FROM eventstore.consumers WHERE name = 'es_super_in'), current_user::text,
    'without run_as a consumer belongs to its creator: es_super_in runs as the superuser that created it');
INSERT INTO eventstore.parked (consumer, event_id, position, topic, attempts, error, replay)
SELECT 'es_super_in', e.id, e.position, e.topic, 5, 'fixture', true
  FROM eventstore.events e WHERE e.id = '00000000-0000-4000-8000-000000000004';

SET LOCAL ROLE es_ctest_admin;

-- What an admin can plant in its own session before run_consumer: a temp
-- table shadowing the handler's unqualified es_ctest_audit (pg_temp comes
-- first for relations), with a trigger that notes who runs it.
CREATE TEMP TABLE es_ctest_planted (as_user name);
GRANT INSERT ON es_ctest_planted TO PUBLIC;
CREATE TEMP TABLE es_ctest_audit (id uuid);
GRANT INSERT ON es_ctest_audit TO PUBLIC;
CREATE FUNCTION pg_temp.es_ctest_plant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pg_temp.es_ctest_planted VALUES (current_user);
    RETURN NULL;
END
$$;
CREATE TRIGGER es_ctest_plant BEFORE INSERT ON pg_temp.es_ctest_audit
    FOR EACH ROW EXECUTE FUNCTION pg_temp.es_ctest_plant();

SELECT lives_ok($$SELECT eventstore.replay_parked('es_in', '00000000-0000-4000-8000-000000000003')$$,
    'admin can replay_parked');
SELECT throws_ok($$SELECT eventstore.run_consumer('es_in')$$, '42501', 'permission denied to run consumer "es_in"',
    'admin cannot run_consumer a consumer whose role (es_ctest_runner) it is not a member of');
SELECT throws_ok($$SELECT eventstore.run_consumer('es_super_in')$$, '42501', 'permission denied to run consumer "es_super_in"',
    'a non-superuser admin cannot run_consumer a consumer whose role is a superuser');
SELECT is((SELECT array_agg(as_user) FROM pg_temp.es_ctest_planted), NULL,
    'code the admin planted in its session (a temp table shadowing the handler''s table, with a trigger) '
    'does not run as the consumer''s run_as role: run_consumer refuses the admin');
SELECT results_eq(
    $$SELECT consumer COLLATE "default", event_id, replay FROM eventstore.parked
       WHERE consumer IN ('es_in', 'es_super_in') ORDER BY consumer$$,
    $$VALUES ('es_in'::text, '00000000-0000-4000-8000-000000000003'::uuid, true),
             ('es_super_in', '00000000-0000-4000-8000-000000000004', true)$$,
    'admin can SELECT parked: the refused runs took nothing, both events are still parked for replay');
SELECT lives_ok($$SELECT eventstore.set_consumer_members('es_out_ack', 2)$$, 'admin can set_consumer_members');
SELECT throws_ok($$SELECT eventstore.set_consumer_members('es_out_ack', 257)$$, '22023',
    'invalid number of consumer members', 'set_consumer_members refuses 257 members (1 to 256)');
SELECT is((SELECT array_agg(members ORDER BY name) FROM eventstore.consumer_status WHERE name = 'es_out_ack'),
    ARRAY[2], 'admin can SELECT consumer_status: es_out_ack has 2 members');
SELECT lives_ok($$SELECT * FROM eventstore.consumer_members$$, 'admin can SELECT consumer_members');
SELECT lives_ok($$SELECT eventstore.reset_consumer('es_out_ack', 0)$$, 'admin can reset_consumer');
SELECT lives_ok($$SELECT eventstore.drop_consumer('es_out_ack')$$, 'admin can drop_consumer');
SELECT is((SELECT array_agg(name::text ORDER BY name) FROM eventstore.consumer_status),
    ARRAY['es_in', 'es_out_nack', 'es_super_in'], 'admin can SELECT consumer_status: es_out_ack is gone');
-- create_consumer looks at current_user, which SET ROLE changes.  The
-- consumer's role must be able to read es_cons: es_ctest_admin is granted
-- read for the creation alone, so that it stays an admin without the
-- functions of a reader in the rest of this section.
RESET ROLE;
SELECT lives_ok($$SELECT eventstore.grant_topic('es_cons', 'read', 'es_ctest_admin')$$,
    'setup: the owner grants es_ctest_admin read on es_cons');
SET LOCAL ROLE es_ctest_admin;
SELECT lives_ok($$SELECT eventstore.create_consumer('es_setrole_out', ARRAY['es_cons'])$$,
    'admin can create an outside consumer under SET ROLE');
RESET ROLE;
SELECT lives_ok($$SELECT eventstore.revoke_topic('es_cons', 'read', 'es_ctest_admin')$$,
    'setup: the owner takes back es_ctest_admin''s read grant on es_cons');
SET LOCAL ROLE es_ctest_admin;
SELECT throws_ok(
    $$SELECT eventstore.create_consumer('es_setrole_super', ARRAY['es_cons'], run_as => session_user::regrole)$$,
    '42501', 'permission denied to create a consumer for role',
    'under SET ROLE an admin cannot create a consumer for the (superuser) session user');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_out_nack')$$, '42501', NULL, 'admin cannot poll');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_out_nack', 100, 0)$$, '42501', NULL, 'admin cannot poll a member');
SELECT throws_ok($$SELECT eventstore.ack('es_out_nack', 2)$$, '42501', NULL, 'admin cannot ack');
SELECT throws_ok($$SELECT eventstore.nack('es_out_nack', 2, 'no')$$, '42501', NULL, 'admin cannot nack');
SELECT throws_ok($$SELECT * FROM eventstore.consumers$$, '42501', NULL, 'admin cannot SELECT consumers directly');
SELECT throws_ok($$UPDATE eventstore.consumers SET run_as = 'es_ctest_admin'$$, '42501', NULL, 'admin cannot UPDATE consumers');
SELECT throws_ok($$SELECT * FROM eventstore.members$$, '42501', NULL, 'admin cannot SELECT members directly');
SELECT throws_ok($$UPDATE eventstore.members SET leased_until = NULL$$, '42501', NULL, 'admin cannot UPDATE members');
SELECT throws_ok($$SELECT nextval('eventstore.batch_ids')$$, '42501', NULL,
    'admin cannot take a number of the sequence batch_ids');
SELECT throws_ok($$DELETE FROM eventstore.parked$$, '42501', NULL, 'admin cannot DELETE parked');
SELECT throws_ok($$UPDATE eventstore.upcasters SET fn = 'public.es_ctest_private(jsonb)'$$, '42501', NULL,
    'admin cannot UPDATE upcasters');
SELECT throws_ok(
    $$SELECT eventstore.register_consumer('es_reg', ARRAY['es_cons'], NULL, 100, 5, session_user::regrole, NULL, 1)$$,
    '42501', NULL, 'admin cannot call the internal register_consumer (bypassing create_consumer''s check)');
SELECT throws_ok(
    $$SELECT eventstore.start_members('es_out_nack', 9, 1, 0, NULL, NULL, 0, 0)$$,
    '42501', NULL, 'admin cannot call the internal start_members (members of its own making for any consumer)');
SELECT throws_ok(
    $$SELECT eventstore.register_upcaster('es_cons', 1, 2, 'public.es_ctest_private(jsonb)', session_user::regrole)$$,
    '42501', NULL, 'admin cannot call the internal register_upcaster (bypassing create_upcaster''s check, '
    'or registering an upcaster run as another role)');

RESET ROLE;

SELECT is((SELECT run_as::text FROM eventstore.consumers WHERE name = 'es_setrole_out'), 'es_ctest_admin',
    'the consumer created under SET ROLE belongs to current_user (es_ctest_admin), not to the superuser session user');
SELECT is((SELECT array_agg(event_id) FROM es_ctest_calls), NULL, 'no handler has run yet');
-- The planted objects would otherwise shadow es_ctest_audit for every later
-- handler run in this session.
DROP TABLE pg_temp.es_ctest_audit, pg_temp.es_ctest_planted;
DROP FUNCTION pg_temp.es_ctest_plant();

------------------------------------------------------------------------------
-- Behaviour: an operator (admin and reader) that is a member of no
-- consumer's role
------------------------------------------------------------------------------

SET LOCAL ROLE es_ctest_operator;

SELECT throws_ok($$SELECT * FROM eventstore.poll('es_out_nack')$$, '42501',
    'permission denied to poll consumer "es_out_nack"',
    'a non-superuser admin (and reader) cannot poll a consumer of a role it is not a member of');
SELECT throws_ok($$SELECT eventstore.ack('es_out_nack', 2)$$, '42501',
    'permission denied to ack a batch of consumer "es_out_nack"',
    'a non-superuser admin (and reader) cannot ack a batch of a consumer of a role it is not a member of');
SELECT throws_ok($$SELECT eventstore.nack('es_out_nack', 2, 'no')$$, '42501',
    'permission denied to nack a batch of consumer "es_out_nack"',
    'a non-superuser admin (and reader) cannot nack a batch of a consumer of a role it is not a member of');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_super_in')$$, '42501',
    'permission denied to poll consumer "es_super_in"',
    'the operator cannot poll the superuser''s consumer either');
SELECT throws_ok($$SELECT eventstore.run_consumer('es_super_in')$$, '42501',
    'permission denied to run consumer "es_super_in"',
    'the operator cannot run_consumer the superuser''s consumer');
SELECT lives_ok($$SELECT eventstore.create_consumer('es_op_out', ARRAY['es_cons'])$$,
    'the operator can create an outside consumer of its own');
SELECT is((SELECT count(*) FROM eventstore.poll('es_op_out')), 0::bigint,
    'the operator can poll its own consumer (nothing in its window yet)');

RESET ROLE;

------------------------------------------------------------------------------
-- Behaviour: admin, as a session user that is a member of es_ctest_runner
------------------------------------------------------------------------------

SET SESSION AUTHORIZATION es_ctest_admin_login;

SELECT is(session_user::text || ' ' || current_user::text, 'es_ctest_admin_login es_ctest_admin_login',
    'now the login admin, by SET SESSION AUTHORIZATION');
SELECT lives_ok($$SELECT eventstore.create_consumer('es_admin_out', ARRAY['es_cons'])$$,
    'admin can create an outside consumer');
SELECT lives_ok(
    $$SELECT eventstore.create_consumer('es_admin_in', ARRAY['es_cons'], 'public.es_ctest_handler(eventstore.event)',
                                        run_as => 'es_ctest_runner')$$,
    'admin can create an in-database consumer run as a role it is a member of');
SELECT throws_ok(
    $$SELECT eventstore.create_consumer('es_admin_stranger', ARRAY['es_cons'], 'public.es_ctest_handler(eventstore.event)',
                                        run_as => 'es_ctest_stranger')$$,
    '42501', 'permission denied to create a consumer for role',
    'admin cannot create a consumer run as a role it is not a member of');
SELECT throws_ok(
    $$SELECT eventstore.create_consumer('es_admin_super', ARRAY['es_cons'], 'public.es_ctest_handler(eventstore.event)',
                                        run_as => (SELECT oid::regrole FROM pg_roles WHERE oid = 10))$$,
    '42501', 'permission denied to create a consumer for role',
    'admin cannot create a consumer run as the bootstrap superuser');
SELECT throws_ok(
    $$SELECT eventstore.create_consumer('es_admin_reader', ARRAY['es_cons'], run_as => 'eventstore_reader')$$,
    '42501', 'permission denied to create a consumer for role',
    'admin cannot create an outside consumer run as a role it is not a member of either');
SELECT throws_ok(
    $$SELECT eventstore.create_consumer('es_admin_private', ARRAY['es_cons'], 'public.es_ctest_private_handler(eventstore.event)',
                                        run_as => 'es_ctest_runner')$$,
    '42501', 'permission denied for handler public.es_ctest_private_handler(eventstore.event)',
    'admin cannot create a consumer whose role may not execute its handler');
SELECT lives_ok($$SELECT eventstore.create_upcaster('es_cons', 1, 2, 'public.es_ctest_upcaster(jsonb)')$$,
    'admin can create_upcaster');
SELECT lives_ok($$SELECT eventstore.set_topic_version('es_cons', '2.0')$$, 'admin can set_topic_version');
SELECT is((SELECT array_agg(topic || ' ' || from_major || '->' || to_major || ' ' || fn || ' as ' || run_as::text)
             FROM eventstore.upcasters),
    ARRAY['es_cons 1->2 public.es_ctest_upcaster(jsonb) as es_ctest_admin_login'],
    'admin can SELECT upcasters: the upcaster belongs to its registrar, the login admin');
SELECT is(has_function_privilege('public.es_ctest_private(jsonb)', 'EXECUTE'), false,
    'setup: the login admin may not execute public.es_ctest_private(jsonb)');
SELECT throws_ok($$SELECT eventstore.create_upcaster('es_cons', 2, 3, 'public.es_ctest_private(jsonb)')$$, '42501',
    'permission denied for function es_ctest_private(jsonb)',
    'admin cannot register as upcaster a function it may not execute');
SELECT is(eventstore.run_consumer('es_in'), 1::bigint,
    'a member of the consumer''s role can run_consumer it: it takes the replayed event');
SELECT throws_ok($$SELECT eventstore.run_consumer('es_super_in')$$, '42501', NULL,
    'the login admin cannot run_consumer the superuser''s consumer');

RESET SESSION AUTHORIZATION;

SELECT is(
    (SELECT array_agg(event_id::text || ' ' || as_user || ' ' || coalesce(upcast_by, '-') ORDER BY event_id) FROM es_ctest_calls),
    ARRAY['00000000-0000-4000-8000-000000000003 es_ctest_runner es_ctest_admin_login'],
    'the handler ran once, as the consumer''s run_as role, and got the event upcast as the upcaster''s '
    'registrar (the login admin), not as the consumer''s role nor the owner'
);
SELECT is((SELECT count(*) FROM eventstore.parked WHERE consumer = 'es_in'), 0::bigint,
    'the handled event is no longer parked');
SELECT results_eq(
    $$SELECT name COLLATE "default", handler, run_as::text FROM eventstore.consumers ORDER BY name$$,
    $$VALUES ('es_admin_in'::text, 'public.es_ctest_handler(eventstore.event)'::text, 'es_ctest_runner'::text),
             ('es_admin_out', NULL, 'es_ctest_admin_login'),
             ('es_in', 'public.es_ctest_handler(eventstore.event)', 'es_ctest_runner'),
             ('es_op_out', NULL, 'es_ctest_operator'),
             ('es_out_nack', NULL, 'es_ctest_outside'),
             ('es_setrole_out', NULL, 'es_ctest_admin'),
             ('es_super_in', 'public.es_ctest_handler(eventstore.event)', current_user::text COLLATE "default")$$,
    'the admins'' consumers exist, run as the chosen role or (by default) as their creator; the refused ones do not'
);

------------------------------------------------------------------------------
-- Handlers are called only if the consumer's role may execute them
------------------------------------------------------------------------------

GRANT EXECUTE ON FUNCTION public.es_ctest_private_handler(eventstore.event) TO es_ctest_runner;
SET SESSION AUTHORIZATION es_ctest_admin_login;
SELECT lives_ok(
    $$SELECT eventstore.create_consumer('es_revoked', ARRAY['es_cons'], 'public.es_ctest_private_handler(eventstore.event)',
                                        run_as => 'es_ctest_runner')$$,
    'admin can create a consumer whose role was granted EXECUTE on the handler');
RESET SESSION AUTHORIZATION;
REVOKE EXECUTE ON FUNCTION public.es_ctest_private_handler(eventstore.event) FROM es_ctest_runner;
INSERT INTO eventstore.parked (consumer, event_id, position, topic, attempts, error, replay)
SELECT 'es_revoked', e.id, e.position, e.topic, 5, 'fixture', true
  FROM eventstore.events e WHERE e.id = '00000000-0000-4000-8000-000000000001';
SET SESSION AUTHORIZATION es_ctest_admin_login;
SELECT is(eventstore.run_consumer('es_revoked'), 1::bigint,
    'run_consumer takes the replayed event of a consumer whose role lost EXECUTE on the handler');
RESET SESSION AUTHORIZATION;
SELECT results_eq(
    $$SELECT error, replay FROM eventstore.parked WHERE consumer = 'es_revoked'$$,
    $$VALUES ('permission denied for function es_ctest_private_handler(eventstore.event)'::text, false)$$,
    'the handler was refused at call time (42501 recorded on the parked event), not called'
);
SELECT is((SELECT count(*) FROM es_ctest_calls WHERE upcast_by = 'private handler'), 0::bigint,
    'the revoked handler never ran');

------------------------------------------------------------------------------
-- Upcasters run as the role that registered them, whoever receives the event
------------------------------------------------------------------------------

SELECT lives_ok(
    $$SELECT eventstore.create_consumer('es_out_up', ARRAY['es_cons'], run_as => 'es_ctest_outside'),
             eventstore.create_consumer('es_out_up3', ARRAY['es_cons'], run_as => 'es_ctest_outside')$$,
    'setup: the owner creates outside consumers es_out_up and es_out_up3 run as es_ctest_outside');
INSERT INTO eventstore.parked (consumer, event_id, position, topic, attempts, error, replay)
SELECT c, e.id, e.position, e.topic, 5, 'fixture', true
  FROM (VALUES ('es_out_up', '00000000-0000-4000-8000-000000000001'::uuid),
               ('es_out_up3', '00000000-0000-4000-8000-000000000002')) AS v(c, id)
  JOIN eventstore.events e ON e.id = v.id;

SELECT is(
    (SELECT (u).envelope->>'version' || ' ' || ((u).envelope #>> '{data,upcast_by}')
       FROM (SELECT eventstore.upcast(eventstore.get('00000000-0000-4000-8000-000000000001')) AS u) AS x),
    '2.0 es_ctest_admin_login',
    'eventstore.upcast() called by the owner (a superuser) runs the upcaster as its registrar, not as the owner'
);

SET LOCAL ROLE es_ctest_reader;
SELECT is(
    (SELECT (u).envelope->>'version' || ' ' || ((u).envelope #>> '{data,upcast_by}')
       FROM (SELECT eventstore.upcast(eventstore.get('00000000-0000-4000-8000-000000000001')) AS u) AS x),
    '2.0 es_ctest_admin_login',
    'eventstore.upcast() called by a reader runs the upcaster as its registrar, not as the reader'
);
SELECT is(
    (SELECT array_agg(id::text || ' ' || (envelope->>'version') || ' ' || (envelope #>> '{data,upcast_by}'))
       FROM eventstore.poll('es_out_up')),
    ARRAY['00000000-0000-4000-8000-000000000001 2.0 es_ctest_admin_login'],
    'poll runs the upcaster as its registrar, not as the consumer''s role (es_ctest_outside) nor the polling reader'
);
RESET ROLE;

-- 2 -> 3: only the login admin may execute that upcaster
SET SESSION AUTHORIZATION es_ctest_admin_login;
SELECT lives_ok($$SELECT eventstore.create_upcaster('es_cons', 2, 3, 'public.es_ctest_upcaster3(jsonb)')$$,
    'admin can register an upcaster it may execute, even if the readers may not');
SELECT lives_ok($$SELECT eventstore.set_topic_version('es_cons', '3.0')$$, 'admin moves es_cons to 3.0');
RESET SESSION AUTHORIZATION;

SELECT is(
    (SELECT array_agg(r || ' ' || has_function_privilege(r, 'public.es_ctest_upcaster3(jsonb)', 'EXECUTE') ORDER BY r)
       FROM unnest(ARRAY['es_ctest_admin_login', 'es_ctest_outside', 'es_ctest_reader']) AS r),
    ARRAY['es_ctest_admin_login true', 'es_ctest_outside false', 'es_ctest_reader false'],
    'setup: of the login admin, es_ctest_outside and es_ctest_reader, only the login admin may execute upcaster3'
);
SET LOCAL ROLE es_ctest_reader;
SELECT is(
    (SELECT (u).envelope->>'version' || ' ' || ((u).envelope #>> '{data,upcast_by}') || ' ' || ((u).envelope #>> '{data,upcast3_by}')
       FROM (SELECT eventstore.upcast(eventstore.get('00000000-0000-4000-8000-000000000001')) AS u) AS x),
    '3.0 es_ctest_admin_login es_ctest_admin_login',
    'eventstore.upcast() by a reader that may not execute upcaster3 runs both upcasters as their registrar'
);
RESET ROLE;

-- EXECUTE is checked for the registrar at each call, not for the receiver
REVOKE EXECUTE ON FUNCTION public.es_ctest_upcaster3(jsonb) FROM es_ctest_admin_login;
GRANT EXECUTE ON FUNCTION public.es_ctest_upcaster3(jsonb) TO es_ctest_outside;
SELECT is(
    (SELECT array_agg(r || ' ' || has_function_privilege(r, 'public.es_ctest_upcaster3(jsonb)', 'EXECUTE') ORDER BY r)
       FROM unnest(ARRAY['es_ctest_admin_login', 'es_ctest_outside', 'es_ctest_reader']) AS r),
    ARRAY['es_ctest_admin_login false', 'es_ctest_outside true', 'es_ctest_reader true'],
    'setup: the login admin (the registrar) lost EXECUTE on upcaster3; es_ctest_outside and its member es_ctest_reader got it'
);
SELECT throws_ok($$SELECT eventstore.upcast(eventstore.get('00000000-0000-4000-8000-000000000001'))$$, '42501',
    'permission denied for function es_ctest_upcaster3(jsonb)',
    'eventstore.upcast() by the owner (a superuser) refuses an upcaster its registrar may no longer execute (42501)');
SET LOCAL ROLE es_ctest_reader;
SELECT throws_ok($$SELECT eventstore.upcast(eventstore.get('00000000-0000-4000-8000-000000000001'))$$, '42501',
    'permission denied for function es_ctest_upcaster3(jsonb)',
    'eventstore.upcast() refuses an upcaster its registrar may no longer execute, even to a reader that may (42501)');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_out_up3')$$, '42501',
    'permission denied for function es_ctest_upcaster3(jsonb)',
    'poll refuses an upcaster its registrar may no longer execute, even when the consumer''s role may (42501)');
RESET ROLE;

GRANT EXECUTE ON FUNCTION public.es_ctest_upcaster3(jsonb) TO es_ctest_admin_login;
REVOKE EXECUTE ON FUNCTION public.es_ctest_upcaster3(jsonb) FROM es_ctest_outside;
SET LOCAL ROLE es_ctest_reader;
SELECT is(
    (SELECT array_agg(id::text || ' ' || (envelope->>'version') || ' ' || (envelope #>> '{data,upcast_by}')
                      || ' ' || (envelope #>> '{data,upcast3_by}'))
       FROM eventstore.poll('es_out_up3')),
    ARRAY['00000000-0000-4000-8000-000000000002 3.0 es_ctest_admin_login es_ctest_admin_login'],
    'once its registrar may execute it again, poll runs both upcasters as the registrar, '
    'though the consumer''s role may not execute upcaster3'
);
RESET ROLE;
-- from here on every role may execute it
GRANT EXECUTE ON FUNCTION public.es_ctest_upcaster3(jsonb) TO PUBLIC;

------------------------------------------------------------------------------
-- The admin -> superuser escalation through a handler calling
-- create_consumer (found in a review) is closed: code running as mallory
-- in a superuser's session (as in a dispatcher worker) creates consumers
-- for mallory only
------------------------------------------------------------------------------

SET LOCAL ROLE es_ctest_mallory;
CREATE FUNCTION es_ctest_mallory.evil(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.es_ctest_escalations VALUES ('evil handler', current_user);
END
$$;
-- her stage-1 handlers create a consumer with the evil handler, for herself
-- or for the bootstrap superuser
CREATE FUNCTION es_ctest_mallory.stage1(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM eventstore.create_consumer('es_stage2', ARRAY['es_cons'], 'es_ctest_mallory.evil(eventstore.event)');
END
$$;
CREATE FUNCTION es_ctest_mallory.stage1_super(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM eventstore.create_consumer('es_stage2_super', ARRAY['es_cons'], 'es_ctest_mallory.evil(eventstore.event)',
                                       run_as => (SELECT r.oid::regrole FROM pg_catalog.pg_roles r WHERE r.oid = 10));
END
$$;
-- the same from a SECURITY DEFINER function: mallory's code, the caller's session
CREATE FUNCTION es_ctest_mallory.create_as_mallory(name text, run_as regrole) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    PERFORM eventstore.create_consumer(name, ARRAY['es_cons'], 'es_ctest_mallory.evil(eventstore.event)', run_as => run_as);
    RETURN session_user || ' ' || current_user;
END
$$;
SELECT lives_ok(
    $$SELECT eventstore.create_consumer('es_mallory', ARRAY['es_cons'], 'es_ctest_mallory.stage1(eventstore.event)'),
             eventstore.create_consumer('es_mallory_super', ARRAY['es_cons'], 'es_ctest_mallory.stage1_super(eventstore.event)')$$,
    'mallory (an admin) creates her consumers es_mallory and es_mallory_super');
SELECT throws_ok(
    $$SELECT eventstore.create_consumer('es_direct', ARRAY['es_cons'], 'es_ctest_mallory.evil(eventstore.event)',
                                        run_as => (SELECT oid::regrole FROM pg_roles WHERE oid = 10))$$,
    '42501', 'permission denied to create a consumer for role',
    'mallory cannot create a consumer run as the superuser herself');
RESET ROLE;

SELECT is(es_ctest_mallory.create_as_mallory('es_definer', NULL), current_user || ' es_ctest_mallory',
    'code running as mallory in the superuser''s session creates a consumer without run_as');
SELECT is((SELECT run_as::text FROM eventstore.consumers WHERE name = 'es_definer'), 'es_ctest_mallory',
    '... and it belongs to mallory (current_user), not to the superuser session user');
SELECT throws_ok($$SELECT es_ctest_mallory.create_as_mallory('es_definer_super', (SELECT oid::regrole FROM pg_roles WHERE oid = 10))$$,
    '42501', 'permission denied to create a consumer for role',
    'code running as mallory in the superuser''s session cannot create a consumer run as the superuser');

-- The real path: the superuser runs mallory's consumers, as a dispatcher
-- worker does (run_consumer and the workers share consumer_run()).
INSERT INTO eventstore.parked (consumer, event_id, position, topic, attempts, error, replay)
SELECT c, e.id, e.position, e.topic, 5, 'fixture', true
  FROM unnest(ARRAY['es_mallory', 'es_mallory_super']) AS c,
       eventstore.events e WHERE e.id = '00000000-0000-4000-8000-000000000001';
SELECT is(eventstore.run_consumer('es_mallory'), 1::bigint, 'the superuser runs es_mallory: one event');
SELECT is((SELECT handler || ' as ' || run_as::text FROM eventstore.consumers WHERE name = 'es_stage2'),
    'es_ctest_mallory.evil(eventstore.event) as es_ctest_mallory',
    'mallory''s handler, run by the superuser, created es_stage2 for mallory, not for the superuser');
SELECT is(eventstore.run_consumer('es_mallory_super'), 1::bigint, 'the superuser runs es_mallory_super: one event');
SELECT results_eq(
    $$SELECT error, replay FROM eventstore.parked WHERE consumer = 'es_mallory_super'$$,
    $$VALUES ('permission denied to create a consumer for role'::text, false)$$,
    'mallory''s handler, run by the superuser, failed to create a consumer run as the superuser'
);
SELECT is((SELECT count(*) FROM eventstore.consumers WHERE name IN ('es_stage2_super', 'es_definer_super', 'es_direct')),
    0::bigint, 'no consumer run as the superuser was created for mallory');
SELECT is((SELECT rolsuper FROM pg_roles WHERE rolname = 'es_ctest_mallory'), false, 'mallory is no superuser');
SELECT is((SELECT array_agg(via) FROM public.es_ctest_escalations), NULL, 'mallory''s evil handler never ran');

------------------------------------------------------------------------------
-- Names cannot inject SQL: create_consumer refuses them with 42602 and
-- creates nothing; the other entry points refuse or do not find them
------------------------------------------------------------------------------

SET SESSION AUTHORIZATION es_ctest_admin_login;

SELECT throws_ok(format('SELECT eventstore.create_consumer(%L, ARRAY[''es_cons''])', n), '42602', 'invalid consumer name',
                 format('create_consumer refuses the name %s', d))
  FROM (VALUES ('x''; DROP TABLE eventstore.events; --', 'x''; DROP TABLE ...; -- (quote, semicolon)'),
               ('x"; DROP TABLE eventstore.events; --', 'x"; DROP TABLE ...; -- (double quote)'),
               ('a;b', 'a;b (semicolon)'),
               ('has space', '"has space"'),
               ('café', 'café (non-ASCII letter)'),
               ('日本', '日本 (unicode)'),
               ('Upper', 'Upper (upper case)'),
               ('UPPER', 'UPPER (upper case)'),
               (repeat('a', 64), 'of 64 characters'),
               (repeat('a', 200), 'of 200 characters'),
               ('', '"" (empty)'),
               ('1abc', '1abc (leading digit)'),
               ('_abc', '_abc (leading underscore)'),
               ('abc-def', 'abc-def (hyphen)'),
               ('abc$$def', 'abc$$def (dollar quote)'),
               (E'abc\ndef', 'with a newline'),
               ('abc\', 'with a backslash')) AS v(n, d);
SELECT throws_ok($$SELECT eventstore.create_consumer(NULL, ARRAY['es_cons'])$$, '42602', 'invalid consumer name',
    'create_consumer refuses a NULL name');
SELECT lives_ok(format('SELECT eventstore.create_consumer(%L, ARRAY[''es_cons''])', 'a' || repeat('_', 61) || '9'),
    'create_consumer accepts a name of 63 characters (the longest allowed)');
SELECT throws_ok($$SELECT eventstore.create_consumer('es_bad_topic', ARRAY['es_cons''; DROP TABLE eventstore.events; --'])$$,
    '42704', NULL, 'a topic name with a quote is only ever a topic that does not exist');
SELECT throws_ok($$SELECT eventstore.drop_consumer('es_in''; DELETE FROM eventstore.consumers; --')$$, '42602', NULL,
    'drop_consumer refuses a name with a quote');
SELECT throws_ok($$SELECT eventstore.reset_consumer('es_in; TRUNCATE eventstore.parked')$$, '42602', NULL,
    'reset_consumer refuses a name with a semicolon');
SELECT throws_ok($$SELECT eventstore.set_consumer_members('es_in''; DELETE FROM eventstore.members; --', 2)$$, '42602', NULL,
    'set_consumer_members refuses a name with a quote');
SELECT throws_ok($$SELECT eventstore.replay_parked('ES_IN', '00000000-0000-4000-8000-000000000003')$$, '42602', NULL,
    'replay_parked refuses an upper-case name');
SELECT throws_ok($$SELECT eventstore.run_consumer('es_in''; DELETE FROM eventstore.consumers; --')$$, '42704', NULL,
    'run_consumer takes a name with a quote as a consumer that does not exist');

RESET SESSION AUTHORIZATION;

SET LOCAL ROLE es_ctest_reader;
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_out_nack''; DELETE FROM eventstore.consumers; --')$$, '42602', NULL,
    'poll refuses a name with a quote');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_out_nack''; DELETE FROM eventstore.members; --', 100, 0)$$, '42602', NULL,
    'poll of a member refuses a name with a quote');
SELECT throws_ok($$SELECT eventstore.ack('es out nack', 1)$$, '42602', NULL, 'ack refuses a name with spaces');
SELECT throws_ok($$SELECT eventstore.nack(repeat('a', 64), 1, 'x')$$, '42602', NULL, 'nack refuses a name of 64 characters');
RESET ROLE;

SELECT is(
    (SELECT array_agg(name::text ORDER BY name) FROM eventstore.consumers),
    ARRAY['a' || repeat('_', 61) || '9', 'es_admin_in', 'es_admin_out', 'es_definer', 'es_in', 'es_mallory',
          'es_mallory_super', 'es_op_out', 'es_out_nack', 'es_out_up', 'es_out_up3', 'es_revoked',
          'es_setrole_out', 'es_stage2', 'es_super_in'],
    'after the refused names, exactly the legitimate consumers exist'
);
SELECT is((SELECT count(*) FROM eventstore.events), 4::bigint, 'the events table is intact');
SELECT is((SELECT count(*) FROM eventstore.parked), 6::bigint, 'the parked table is intact');

------------------------------------------------------------------------------
-- Upcasters run sandboxed: as their registrar, under search_path
-- pg_catalog, pg_temp, as a security-restricted operation whose setting
-- changes are undone when they return
------------------------------------------------------------------------------

-- the session's search_path, to compare with after upcasters and handlers ran
SELECT current_setting('search_path') AS es_ctest_search_path \gset

SELECT lives_ok(
    $$SELECT eventstore.create_topic('es_upenv', '1.0'), eventstore.create_topic('es_uptmp', '1.0')$$,
    'setup: the owner creates topics es_upenv and es_uptmp');
SELECT lives_ok(
    $$SELECT eventstore.grant_topic(t, 'read', 'es_ctest_mallory') FROM unnest(ARRAY['es_upenv', 'es_uptmp']) AS t$$,
    'setup: the owner grants mallory read on es_upenv and es_uptmp');
SELECT lives_ok(
    $$SELECT eventstore.append(t, format(
        '{"id": "00000000-0000-4000-8000-0000000000%s", "type": "new", "version": "1.0",
          "data": {}, "metadata": {"source": "test/consumer_privileges", "time": "2024-01-01T00:00:00Z"}}',
        n)::jsonb)
        FROM (VALUES ('es_upenv', '06'), ('es_uptmp', '07')) AS v(t, n)$$,
    'setup: the owner appends an event to each');
SET LOCAL ROLE es_ctest_mallory;
-- notes who runs it under which search_path, then changes settings for the session
CREATE FUNCTION es_ctest_mallory.up_env(envelope jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    seen jsonb := jsonb_build_object('user', current_user::text, 'path', current_setting('search_path'));
BEGIN
    PERFORM set_config('search_path', 'es_ctest_mallory, public', false);
    PERFORM set_config('es_ctest.leak', 'set by an upcaster', false);
    RETURN jsonb_set(jsonb_set(envelope, '{version}', '"2.0"'), '{data,seen}', seen);
END
$$;
CREATE FUNCTION es_ctest_mallory.up_tmp(envelope jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    CREATE TEMP TABLE es_ctest_up_tmp (id uuid);
    RETURN jsonb_set(envelope, '{version}', '"2.0"');
END
$$;
SELECT lives_ok(
    $$SELECT eventstore.create_upcaster('es_upenv', 1, 2, 'es_ctest_mallory.up_env(jsonb)'),
             eventstore.create_upcaster('es_uptmp', 1, 2, 'es_ctest_mallory.up_tmp(jsonb)'),
             eventstore.set_topic_version('es_upenv', '2.0'),
             eventstore.set_topic_version('es_uptmp', '2.0')$$,
    'mallory registers upcasters for es_upenv and es_uptmp (under SET ROLE) and moves both topics to 2.0');
RESET ROLE;
SELECT is(
    (SELECT array_agg(topic || ' ' || run_as::text ORDER BY topic) FROM eventstore.upcasters
      WHERE topic IN ('es_upenv', 'es_uptmp')),
    ARRAY['es_upenv es_ctest_mallory', 'es_uptmp es_ctest_mallory'],
    'create_upcaster records current_user (mallory) as the registrar, not the superuser session user'
);

SELECT is(
    (eventstore.upcast(eventstore.get('00000000-0000-4000-8000-000000000006'))).envelope #> '{data,seen}',
    '{"user": "es_ctest_mallory", "path": "pg_catalog, pg_temp"}'::jsonb,
    'called by the owner (a superuser), the upcaster runs as its registrar with search_path = pg_catalog, pg_temp'
);
SELECT is(current_setting('search_path'), :'es_ctest_search_path',
    'the search_path the upcaster set (set_config(..., false)) was reset when it returned');
SELECT is(coalesce(current_setting('es_ctest.leak', true), ''), '',
    'a setting the upcaster made up (set_config(..., false)) was reset when it returned');
SET LOCAL ROLE es_ctest_reader;
SELECT is(
    (eventstore.upcast(eventstore.get('00000000-0000-4000-8000-000000000006'))).envelope #> '{data,seen}',
    '{"user": "es_ctest_mallory", "path": "pg_catalog, pg_temp"}'::jsonb,
    'called by a reader, the upcaster runs as its registrar with search_path = pg_catalog, pg_temp'
);
RESET ROLE;
SET LOCAL search_path = es_ctest_mallory, public;
SELECT is(
    (eventstore.upcast(eventstore.get('00000000-0000-4000-8000-000000000006'))).envelope #> '{data,seen}',
    '{"user": "es_ctest_mallory", "path": "pg_catalog, pg_temp"}'::jsonb,
    'the caller''s own search_path does not reach the upcaster: it still runs under pg_catalog, pg_temp'
);
SELECT is(current_setting('search_path'), 'es_ctest_mallory, public',
    'and the caller''s search_path is the caller''s again after the upcaster returned');
SET LOCAL search_path TO DEFAULT;
SELECT is(current_setting('search_path'), :'es_ctest_search_path', 'setup: the session''s search_path is back');

SELECT throws_ok($$SELECT eventstore.upcast(eventstore.get('00000000-0000-4000-8000-000000000007'))$$, '42501',
    'cannot create temporary table within security-restricted operation',
    'an upcaster cannot create a temporary table (security-restricted operation): upcast() fails with 42501');
SET LOCAL ROLE es_ctest_reader;
SELECT throws_ok($$SELECT eventstore.upcast(eventstore.get('00000000-0000-4000-8000-000000000007'))$$, '42501',
    'cannot create temporary table within security-restricted operation',
    'nor when a reader calls upcast()');
RESET ROLE;
SELECT is(to_regclass('pg_temp.es_ctest_up_tmp'), NULL, 'the upcaster''s temporary table does not exist');

------------------------------------------------------------------------------
-- Holes of earlier models, now closed
------------------------------------------------------------------------------

-- 1. Handlers run as run_as in the session of whoever runs the consumer (a
-- dispatcher worker: the bootstrap superuser).  They used to run with only
-- SECURITY_LOCAL_USERID_CHANGE, so a handler could leave temp objects (or a
-- session-level search_path) behind, and the next consumer's handler, run as
-- another role in the same session, used them.  Now they run as a
-- security-restricted operation whose setting changes are undone on return.
SET LOCAL ROLE es_ctest_mallory;
CREATE FUNCTION es_ctest_mallory.plant(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS es_ctest_audit (id uuid);
    CREATE OR REPLACE FUNCTION pg_temp.es_ctest_mallory_trg() RETURNS trigger LANGUAGE plpgsql AS $t$
    BEGIN
        INSERT INTO public.es_ctest_escalations VALUES ('planted trigger', current_user);
        RETURN NULL;
    END
    $t$;
    CREATE TRIGGER es_ctest_mallory_trg BEFORE INSERT ON pg_temp.es_ctest_audit
        FOR EACH ROW EXECUTE FUNCTION pg_temp.es_ctest_mallory_trg();
END
$f$;
-- a table of mallory's shadowing es_ctest_audit, with a trigger, for the
-- next handler to find if her handler's search_path outlived its call
CREATE TABLE es_ctest_mallory.es_ctest_audit (id uuid);
CREATE FUNCTION es_ctest_mallory.trap() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.es_ctest_escalations VALUES ('planted search_path', current_user);
    RETURN NULL;
END
$f$;
CREATE TRIGGER es_ctest_trap BEFORE INSERT ON es_ctest_mallory.es_ctest_audit
    FOR EACH ROW EXECUTE FUNCTION es_ctest_mallory.trap();
GRANT USAGE ON SCHEMA es_ctest_mallory TO PUBLIC;
GRANT INSERT ON es_ctest_mallory.es_ctest_audit TO PUBLIC;
CREATE FUNCTION es_ctest_mallory.plant_path(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM set_config('search_path', 'es_ctest_mallory, public', false);
    INSERT INTO pg_temp.es_ctest_calls VALUES (e.id, current_user, current_setting('search_path'));
END
$f$;
SELECT lives_ok(
    $$SELECT eventstore.create_consumer('es_plant', ARRAY['es_cons'], 'es_ctest_mallory.plant(eventstore.event)'),
             eventstore.create_consumer('es_plant_path', ARRAY['es_cons'], 'es_ctest_mallory.plant_path(eventstore.event)')$$,
    'mallory creates consumers es_plant and es_plant_path for herself');
RESET ROLE;

-- 1a. a temp table shadowing another handler's table, with a trigger
INSERT INTO eventstore.parked (consumer, event_id, position, topic, attempts, error, replay)
SELECT 'es_plant', e.id, e.position, e.topic, 5, 'fixture', true
  FROM eventstore.events e WHERE e.id = '00000000-0000-4000-8000-000000000001';
SELECT is(eventstore.run_consumer('es_plant') + eventstore.run_consumer('es_super_in'), 2::bigint,
    'the superuser runs es_plant, then its own es_super_in, in one session (as a dispatcher worker does)');
SELECT results_eq(
    $$SELECT error, replay FROM eventstore.parked WHERE consumer = 'es_plant'$$,
    $$VALUES ('cannot create temporary table within security-restricted operation'::text, false)$$,
    'mallory''s handler failed to create its temp table (security-restricted operation): the event is parked with that error'
);
SELECT is(
    (SELECT array_agg(x) FROM unnest(ARRAY[to_regclass('pg_temp.es_ctest_audit')::text,
                                           to_regprocedure('pg_temp.es_ctest_mallory_trg()')::text]) AS x
      WHERE x IS NOT NULL),
    NULL,
    'neither the temp table nor the trigger function mallory''s handler tried to plant exists in the session'
);
SELECT is(
    (SELECT array_agg(as_user::text || ' ' || (a.id IS NOT NULL)) FROM es_ctest_calls c
       LEFT JOIN public.es_ctest_audit a ON a.id = c.event_id
      WHERE c.event_id = '00000000-0000-4000-8000-000000000004'),
    ARRAY[current_user || ' true'],
    'the superuser''s es_super_in handler then ran as the superuser and wrote to public.es_ctest_audit'
);
SELECT is((SELECT array_agg(via || ' as ' || as_user) FROM public.es_ctest_escalations), NULL,
    'objects a handler tries to leave in the session that runs it (a temp table shadowing another handler''s table, '
    'with a trigger) never run as another consumer''s role');

-- 1b. a session-level search_path leading the next handler to mallory's table
INSERT INTO eventstore.parked (consumer, event_id, position, topic, attempts, error, replay)
SELECT c, e.id, e.position, e.topic, 5, 'fixture', true
  FROM (VALUES ('es_plant_path', '00000000-0000-4000-8000-000000000001'::uuid),
               ('es_super_in', '00000000-0000-4000-8000-000000000002')) AS v(c, id)
  JOIN eventstore.events e ON e.id = v.id;
SELECT is(eventstore.run_consumer('es_plant_path') + eventstore.run_consumer('es_super_in'), 2::bigint,
    'the superuser runs es_plant_path, then its own es_super_in, in one session');
SELECT is((SELECT count(*) FROM eventstore.parked WHERE consumer IN ('es_plant_path', 'es_super_in')), 0::bigint,
    'both handled their event (set_config is allowed in a handler)');
SELECT is(
    (SELECT array_agg(as_user::text || ': ' || upcast_by) FROM es_ctest_calls
      WHERE event_id = '00000000-0000-4000-8000-000000000001' AND as_user = 'es_ctest_mallory'),
    ARRAY['es_ctest_mallory: es_ctest_mallory, public'],
    'inside mallory''s handler, its set_config(''search_path'', ..., false) took effect'
);
SELECT is(current_setting('search_path'), :'es_ctest_search_path',
    'after run_consumer the session''s search_path is unchanged: the handler''s set_config(''search_path'', ..., false) '
    'was reset when it returned');
SELECT is(
    (SELECT array_agg(as_user::text || ' ' || (a.id IS NOT NULL)) FROM es_ctest_calls c
       LEFT JOIN public.es_ctest_audit a ON a.id = c.event_id
      WHERE c.event_id = '00000000-0000-4000-8000-000000000002' AND c.as_user = current_user),
    ARRAY[current_user || ' true'],
    'the superuser''s es_super_in handler then wrote to public.es_ctest_audit'
);
SELECT is((SELECT count(*) FROM es_ctest_mallory.es_ctest_audit), 0::bigint,
    '... and not to mallory''s es_ctest_mallory.es_ctest_audit');
SELECT is((SELECT array_agg(via || ' as ' || as_user) FROM public.es_ctest_escalations), NULL,
    'a search_path a handler sets for the session never leads another consumer''s handler to code of the handler''s role');

-- 2. An admin that may read a topic registers upcasters for it, with any
-- function it may execute (its own).  They used to run as every role
-- receiving the topic's events (the superuser's consumers, other roles'
-- consumers, readers); now they run as their registrar.
SELECT lives_ok($$SELECT eventstore.create_topic('es_trojan', '1.0')$$, 'setup: the owner creates topic es_trojan');
SELECT lives_ok($$SELECT eventstore.grant_topic('es_trojan', 'read', 'es_ctest_mallory')$$,
    'setup: the owner grants mallory read on es_trojan');
SELECT lives_ok(
    $$SELECT eventstore.append('es_trojan',
        '{"id": "00000000-0000-4000-8000-000000000005", "type": "new", "version": "1.0",
          "data": {}, "metadata": {"source": "test/consumer_privileges", "time": "2024-01-01T00:00:00Z"}}')$$,
    'setup: the owner appends an event to es_trojan');
SELECT lives_ok(
    $$SELECT eventstore.create_consumer('es_super_trojan', ARRAY['es_trojan'], 'public.es_ctest_handler(eventstore.event)')$$,
    'setup: the owner creates its consumer es_super_trojan (run as the superuser)');
INSERT INTO eventstore.parked (consumer, event_id, position, topic, attempts, error, replay)
SELECT 'es_super_trojan', e.id, e.position, e.topic, 5, 'fixture', true
  FROM eventstore.events e WHERE e.id = '00000000-0000-4000-8000-000000000005';
SET LOCAL ROLE es_ctest_mallory;
CREATE FUNCTION es_ctest_mallory.up(envelope jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.es_ctest_escalations VALUES ('upcaster', current_user);
    INSERT INTO es_ctest_mallory.seen VALUES (envelope);
    RETURN jsonb_set(envelope, '{version}', '"2.0"');
END
$$;
CREATE TABLE es_ctest_mallory.seen (envelope jsonb);
SELECT lives_ok($$SELECT eventstore.create_upcaster('es_trojan', 1, 2, 'es_ctest_mallory.up(jsonb)'),
                         eventstore.set_topic_version('es_trojan', '2.0')$$,
    'mallory registers her own function as the upcaster of es_trojan and moves the topic to 2.0');
RESET ROLE;
SELECT is(eventstore.run_consumer('es_super_trojan'), 1::bigint,
    'the superuser runs its consumer es_super_trojan (as a dispatcher worker does)');
SELECT is((SELECT count(*) FROM eventstore.parked WHERE consumer = 'es_super_trojan'), 0::bigint,
    'the superuser''s handler got the event, upcast by mallory''s upcaster');
SELECT is((SELECT array_agg(via || ' as ' || as_user) FROM public.es_ctest_escalations),
    ARRAY['upcaster as es_ctest_mallory'],
    'mallory''s upcaster ran once, as mallory (its registrar), for the superuser''s consumer');
SELECT is((SELECT array_agg(via || ' as ' || as_user) FROM public.es_ctest_escalations e
            JOIN pg_roles r ON r.rolname = e.as_user WHERE r.rolsuper), NULL,
    'code registered as an upcaster by a non-superuser admin never runs as a superuser');
DELETE FROM public.es_ctest_escalations;

-- 3. A superuser could create a consumer whose run_as is 0 ('-'); poll, ack
-- and nack took role 0 for "no such consumer" and skipped the membership
-- check.  Now role 0 is refused at creation and by the tables.
SELECT throws_ok($$SELECT eventstore.create_consumer('es_norole', ARRAY['es_cons'], run_as => '-')$$,
    '22023', 'invalid consumer role',
    'even the owner (a superuser) cannot create a consumer with run_as ''-'' (no role): 22023');
SELECT is((SELECT count(*) FROM eventstore.consumers WHERE name = 'es_norole' OR run_as::oid = 0), 0::bigint,
    'no consumer es_norole, and no consumer of role 0, exists');
SELECT throws_ok($$UPDATE eventstore.consumers SET run_as = '-' WHERE name = 'es_op_out'$$, '23514', NULL,
    'not even the owner can give a consumer role 0 by writing to consumers (CHECK)');
SELECT throws_ok($$UPDATE eventstore.upcasters SET run_as = '-' WHERE topic = 'es_trojan'$$, '23514', NULL,
    'not even the owner can give an upcaster role 0 by writing to upcasters (CHECK)');
SET LOCAL ROLE es_ctest_reader2;
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_op_out')$$, '42501', 'permission denied to poll consumer "es_op_out"',
    'setup: es_ctest_reader2 cannot poll another role''s consumer with nothing pending');
SELECT throws_ok($$SELECT * FROM eventstore.poll('es_norole')$$, '42704', 'consumer "es_norole" does not exist',
    'a reader that is a member of no role finds no consumer run as ''-'' to poll');
RESET ROLE;

------------------------------------------------------------------------------
-- Holes closed by per-topic read privileges
------------------------------------------------------------------------------

-- 4. An admin may not read events, but it could create an in-database
-- consumer of its own on any topic and receive every event in its handler.
-- Now the consumer's role must be able to read its topics, when the
-- consumer is created and at every batch: once mallory's read grant on
-- es_cons is taken back, her consumer gets nothing and she can create no
-- other.
SET LOCAL ROLE es_ctest_mallory;
CREATE TABLE es_ctest_mallory.loot (envelope jsonb);
CREATE FUNCTION es_ctest_mallory.loot(e eventstore.event) RETURNS void LANGUAGE sql AS $$
    INSERT INTO es_ctest_mallory.loot VALUES (e.envelope)
$$;
SELECT lives_ok($$SELECT eventstore.create_consumer('es_loot', ARRAY['es_cons'], 'es_ctest_mallory.loot(eventstore.event)')$$,
    'mallory creates consumer es_loot for herself (she may read es_cons)');
RESET ROLE;
INSERT INTO eventstore.parked (consumer, event_id, position, topic, attempts, error, replay)
SELECT 'es_loot', e.id, e.position, e.topic, 5, 'fixture', true
  FROM eventstore.events e WHERE e.id = '00000000-0000-4000-8000-000000000001';
SELECT lives_ok($$SELECT eventstore.revoke_topic('es_cons', 'read', 'es_ctest_mallory')$$,
    'setup: the owner takes back mallory''s read grant on es_cons');
SET LOCAL ROLE es_ctest_mallory;
SELECT throws_ok($$SELECT * FROM eventstore.read('es_cons')$$, '42501', NULL, 'setup: mallory may not read es_cons');
SELECT throws_ok($$SELECT eventstore.run_consumer('es_loot')$$, '42501', 'permission denied to read topic "es_cons"',
    'mallory cannot run es_loot once she may not read es_cons (42501)');
SELECT throws_ok(
    $$SELECT eventstore.create_consumer('es_loot2', ARRAY['es_cons'], 'es_ctest_mallory.loot(eventstore.event)')$$,
    '42501', 'permission denied to read topic "es_cons"',
    'mallory cannot create another consumer of es_cons for herself (42501)');
SELECT is((SELECT count(*) FROM es_ctest_mallory.loot), 0::bigint,
    'an admin, which may not read events, does not receive them through an in-database consumer of its own');
RESET ROLE;

-- 5. An upcaster runs as its registrar, but it receives every event of its
-- topic at an older major version, whoever the event is for: the
-- superuser's es_super_trojan above.  Any admin could register one on any
-- topic and move the topic's version (set_topic_version), and so see
-- events no eventstore role of hers may read, and change what every
-- consumer and reader receives (only the id and major version are checked).
-- Now the registrar must be able to read the topic.
SET LOCAL ROLE es_ctest_mallory;
SELECT throws_ok($$SELECT eventstore.create_upcaster('es_cons', 3, 4, 'es_ctest_mallory.up(jsonb)')$$,
    '42501', 'permission denied to read topic "es_cons"',
    'mallory, who may not read es_cons, cannot register an upcaster for it (42501)');
RESET ROLE;
SELECT is((SELECT array_agg(e.envelope->>'id') FROM es_ctest_mallory.seen e),
    ARRAY['00000000-0000-4000-8000-000000000005'],
    'an admin, which may not read events, does not receive them through an upcaster it registered: '
    'mallory''s upcaster saw only the event of es_trojan, which she was granted read on');

-- 5. A handler or upcaster runs as a role long after its registration, and
-- its owner may change what it does at any time.  A function of mallory's
-- registered (by the superuser) to run as the superuser would let mallory
-- act as the superuser: its owner must have the privileges of the role it
-- runs as, checked at registration and at every call.
SET LOCAL ROLE es_ctest_mallory;
CREATE FUNCTION es_ctest_mallory.lent(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.es_ctest_escalations VALUES ('lent handler', current_user);
END
$f$;
CREATE FUNCTION es_ctest_mallory.lent_up(envelope jsonb) RETURNS jsonb LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.es_ctest_escalations VALUES ('lent upcaster', current_user);
    RETURN envelope;
END
$f$;
RESET ROLE;
SELECT throws_ok($$SELECT eventstore.create_consumer('es_lent', ARRAY['es_cons'], 'es_ctest_mallory.lent(eventstore.event)')$$,
    '42501', format('function es_ctest_mallory.lent(eventstore.event) may not run as role "%s"', current_user),
    'the superuser cannot register mallory''s function as a handler that runs as the superuser (42501)');
SELECT throws_ok($$SELECT eventstore.create_upcaster('es_cons', 7, 8, 'es_ctest_mallory.lent_up(jsonb)')$$,
    '42501', format('function es_ctest_mallory.lent_up(pg_catalog.jsonb) may not run as role "%s"', current_user),
    'nor as an upcaster registered by the superuser (42501)');
-- A function the superuser owns, registered, and given to mallory later.
CREATE FUNCTION public.es_ctest_given(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.es_ctest_escalations VALUES ('given handler', current_user);
END
$f$;
SELECT lives_ok($$SELECT eventstore.create_consumer('es_given', ARRAY['es_cons'], 'public.es_ctest_given(eventstore.event)',
                                                      max_attempts => 1)$$,
    'the superuser registers a handler of its own');
ALTER FUNCTION public.es_ctest_given(eventstore.event) OWNER TO es_ctest_mallory;
INSERT INTO eventstore.parked (consumer, event_id, position, topic, attempts, error, replay)
SELECT 'es_given', e.id, e.position, e.topic, 1, 'fixture', true
  FROM eventstore.events e WHERE e.id = '00000000-0000-4000-8000-000000000001';
SELECT is(eventstore.run_consumer('es_given'), 1::bigint, 'the consumer runs once the function is mallory''s');
SELECT is((SELECT error FROM eventstore.parked WHERE consumer = 'es_given'),
    format('function public.es_ctest_given(eventstore.event) may not run as role "%s"', current_user),
    'its handler is refused at the call: the event is parked with the reason');
SELECT is((SELECT array_agg(via || ' as ' || as_user) FROM public.es_ctest_escalations), NULL,
    'neither mallory''s handler nor her upcaster ever ran');

SELECT * FROM finish();
ROLLBACK;
