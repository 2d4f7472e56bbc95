-- test/pgtap/privileges.sql: structure, roles and privileges of eventstore.
--
-- Rules (issue): eventstore_writer appends, eventstore_reader reads,
-- eventstore_admin manages topics; nothing is granted to PUBLIC; the events
-- table is never writable directly by any of these roles.  Checked three
-- ways: the catalogue (structure), the ACLs (has_*_privilege), and what a
-- member of each role can actually do under SET ROLE.  Everything happens in
-- one transaction that is rolled back, including the test roles.
-- The consumer API (consumers, poll/ack, upcasters) is checked the same way
-- in consumer_privileges.sql; the list of SECURITY DEFINER functions below
-- covers the whole schema.

BEGIN;
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
RESET client_min_messages;

SELECT plan(270);

------------------------------------------------------------------------------
-- Structure: schema, tables, columns
------------------------------------------------------------------------------

SELECT has_schema('eventstore', 'schema eventstore exists');

SELECT has_table('eventstore', 'events', 'table eventstore.events exists');
SELECT has_table('eventstore', 'topics', 'table eventstore.topics exists');
SELECT has_table('eventstore', 'stream_heads', 'table eventstore.stream_heads exists');
SELECT has_view('eventstore', 'streams', 'view eventstore.streams exists');

-- events
SELECT has_column('eventstore', 'events', 'position', 'events has position');
SELECT col_type_is('eventstore', 'events', 'position', 'bigint', 'events.position is bigint');
SELECT col_is_pk('eventstore', 'events', 'position', 'events.position is the primary key');
SELECT has_column('eventstore', 'events', 'id', 'events has id');
SELECT col_type_is('eventstore', 'events', 'id', 'uuid', 'events.id is uuid');
SELECT col_not_null('eventstore', 'events', 'id', 'events.id is NOT NULL');
SELECT col_is_unique('eventstore', 'events', 'id', 'events.id is unique');
SELECT col_type_is('eventstore', 'events', 'topic', 'text', 'events.topic is text');
SELECT col_not_null('eventstore', 'events', 'topic', 'events.topic is NOT NULL');
SELECT col_type_is('eventstore', 'events', 'type', 'text', 'events.type is text');
SELECT col_type_is('eventstore', 'events', 'version_major', 'integer', 'events.version_major is integer');
SELECT col_type_is('eventstore', 'events', 'version_minor', 'integer', 'events.version_minor is integer');
SELECT col_type_is('eventstore', 'events', 'data', 'jsonb', 'events.data is jsonb');
SELECT col_type_is('eventstore', 'events', 'metadata', 'jsonb', 'events.metadata is jsonb');
SELECT col_type_is('eventstore', 'events', 'stream', 'text', 'events.stream is text');
SELECT col_type_is('eventstore', 'events', 'stream_version', 'bigint', 'events.stream_version is bigint');
SELECT col_type_is('eventstore', 'events', 'recorded_at', 'timestamp with time zone', 'events.recorded_at is timestamptz');
SELECT has_column('eventstore', 'events', 'xid', 'events has xid');
SELECT col_type_is('eventstore', 'events', 'xid', 'xid8', 'events.xid is xid8');
SELECT col_not_null('eventstore', 'events', 'xid', 'events.xid is NOT NULL');

-- topics
SELECT col_type_is('eventstore', 'topics', 'name', 'text', 'topics.name is text');
SELECT col_is_pk('eventstore', 'topics', 'name', 'topics.name is the primary key');
SELECT col_type_is('eventstore', 'topics', 'current_major', 'integer', 'topics.current_major is integer');
SELECT col_type_is('eventstore', 'topics', 'current_minor', 'integer', 'topics.current_minor is integer');
SELECT col_type_is('eventstore', 'topics', 'retention', 'interval', 'topics.retention is interval');
SELECT col_type_is('eventstore', 'topics', 'created_at', 'timestamp with time zone', 'topics.created_at is timestamptz');

-- stream_heads
SELECT col_type_is('eventstore', 'stream_heads', 'topic', 'text', 'stream_heads.topic is text');
SELECT col_type_is('eventstore', 'stream_heads', 'stream', 'text', 'stream_heads.stream is text');
SELECT col_type_is('eventstore', 'stream_heads', 'version_floor', 'bigint', 'stream_heads.version_floor is bigint');
SELECT col_type_is('eventstore', 'stream_heads', 'closed_at', 'timestamp with time zone', 'stream_heads.closed_at is timestamptz');
SELECT col_is_pk('eventstore', 'stream_heads', ARRAY['topic', 'stream'], 'stream_heads is keyed by (topic, stream)');
-- snapshots
SELECT col_is_pk('eventstore', 'snapshots', ARRAY['topic', 'stream', 'version'], 'snapshots are keyed by (topic, stream, version)');

------------------------------------------------------------------------------
-- Structure: the event type
------------------------------------------------------------------------------

SELECT has_composite('eventstore', 'event', 'composite type eventstore.event exists');
SELECT is(
    (SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
       FROM pg_attribute a
      WHERE a.attrelid = 'eventstore.event'::regclass AND a.attnum BETWEEN 1 AND 7 AND NOT a.attisdropped),
    ARRAY['position bigint', 'id uuid', 'topic text', 'stream text', 'stream_version bigint',
          'envelope jsonb', 'recorded_at timestamp with time zone'],
    'eventstore.event has position, id, topic, stream, stream_version, envelope, recorded_at in that order'
);

------------------------------------------------------------------------------
-- Structure: functions and their signatures
------------------------------------------------------------------------------

SELECT has_function('eventstore', 'validate', ARRAY['jsonb'], 'validate(jsonb) exists');
SELECT has_function('eventstore', 'is_valid', ARRAY['jsonb'], 'is_valid(jsonb) exists');
SELECT has_function('eventstore', 'create_topic', ARRAY['text', 'text', 'interval'], 'create_topic(text, text, interval) exists');
SELECT has_function('eventstore', 'append', ARRAY['text', 'jsonb', 'text', 'bigint'], 'append(text, jsonb, text, bigint) exists');
SELECT has_function('eventstore', 'append_batch', ARRAY['text', 'jsonb[]', 'text', 'bigint'], 'append_batch(text, jsonb[], text, bigint) exists');
SELECT has_function('eventstore', 'read', ARRAY['text', 'bigint', 'integer', 'text[]'], 'read(text, bigint, integer, text[]) exists');
SELECT has_function('eventstore', 'read_stream', ARRAY['text', 'text', 'bigint', 'integer', 'boolean'], 'read_stream(text, text, bigint, integer, boolean) exists');
SELECT has_function('eventstore', 'get', ARRAY['uuid'], 'get(uuid) exists');

SELECT function_returns('eventstore', 'validate', ARRAY['jsonb'], 'void', 'validate returns void');
SELECT function_returns('eventstore', 'is_valid', ARRAY['jsonb'], 'boolean', 'is_valid returns boolean');
SELECT function_returns('eventstore', 'create_topic', ARRAY['text', 'text', 'interval'], 'void', 'create_topic returns void');
SELECT function_returns('eventstore', 'append', ARRAY['text', 'jsonb', 'text', 'bigint'], 'bigint', 'append returns bigint');
SELECT function_returns('eventstore', 'append_batch', ARRAY['text', 'jsonb[]', 'text', 'bigint'], 'setof bigint', 'append_batch returns setof bigint');
SELECT function_returns('eventstore', 'read', ARRAY['text', 'bigint', 'integer', 'text[]'], 'setof eventstore.event', 'read returns setof eventstore.event');
SELECT function_returns('eventstore', 'read_stream', ARRAY['text', 'text', 'bigint', 'integer', 'boolean'], 'setof eventstore.event', 'read_stream returns setof eventstore.event');
SELECT function_returns('eventstore', 'get', ARRAY['uuid'], 'eventstore.event', 'get returns eventstore.event');

------------------------------------------------------------------------------
-- Structure: roles
------------------------------------------------------------------------------

SELECT has_role('eventstore_writer', 'role eventstore_writer exists');
SELECT has_role('eventstore_reader', 'role eventstore_reader exists');
SELECT has_role('eventstore_admin', 'role eventstore_admin exists');
SELECT has_role('eventstore_decrypt', 'role eventstore_decrypt exists');
SELECT is(
    (SELECT array_agg(format('%s login=%s super=%s createrole=%s createdb=%s bypassrls=%s',
                             rolname, rolcanlogin::text, rolsuper::text, rolcreaterole::text,
                             rolcreatedb::text, rolbypassrls::text)
                      ORDER BY rolname)
       FROM pg_roles
      WHERE rolname IN ('eventstore_writer', 'eventstore_reader', 'eventstore_admin', 'eventstore_decrypt')),
    ARRAY['eventstore_admin login=false super=false createrole=false createdb=false bypassrls=false',
          'eventstore_decrypt login=false super=false createrole=false createdb=false bypassrls=false',
          'eventstore_reader login=false super=false createrole=false createdb=false bypassrls=false',
          'eventstore_writer login=false super=false createrole=false createdb=false bypassrls=false'],
    'the eventstore roles are NOLOGIN and have no SUPERUSER, CREATEROLE, CREATEDB or BYPASSRLS'
);
SELECT is(
    (SELECT count(*) FROM pg_auth_members m
      WHERE m.roleid IN (SELECT oid FROM pg_roles WHERE rolname LIKE 'eventstore\_%')
        AND m.member IN (SELECT oid FROM pg_roles WHERE rolname LIKE 'eventstore\_%')),
    0::bigint,
    'the eventstore roles are not members of one another'
);

------------------------------------------------------------------------------
-- Privileges in the catalogue: functions
------------------------------------------------------------------------------

-- validate / is_valid: the three roles, not PUBLIC
SELECT function_privs_are('eventstore', 'validate', ARRAY['jsonb'], 'eventstore_writer', ARRAY['EXECUTE']);
SELECT function_privs_are('eventstore', 'validate', ARRAY['jsonb'], 'eventstore_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('eventstore', 'validate', ARRAY['jsonb'], 'eventstore_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('eventstore', 'validate', ARRAY['jsonb'], 'public', '{}'::name[]);
SELECT function_privs_are('eventstore', 'is_valid', ARRAY['jsonb'], 'eventstore_writer', ARRAY['EXECUTE']);
SELECT function_privs_are('eventstore', 'is_valid', ARRAY['jsonb'], 'eventstore_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('eventstore', 'is_valid', ARRAY['jsonb'], 'eventstore_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('eventstore', 'is_valid', ARRAY['jsonb'], 'public', '{}'::name[]);

-- create_topic: admin only
SELECT function_privs_are('eventstore', 'create_topic', ARRAY['text', 'text', 'interval'], 'eventstore_writer', '{}'::name[]);
SELECT function_privs_are('eventstore', 'create_topic', ARRAY['text', 'text', 'interval'], 'eventstore_reader', '{}'::name[]);
SELECT function_privs_are('eventstore', 'create_topic', ARRAY['text', 'text', 'interval'], 'eventstore_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('eventstore', 'create_topic', ARRAY['text', 'text', 'interval'], 'public', '{}'::name[]);

-- grant_topic / revoke_topic: admin only
SELECT function_privs_are('eventstore', f, ARRAY['text', 'text', 'regrole'], r,
                          CASE r WHEN 'eventstore_admin' THEN ARRAY['EXECUTE'] ELSE '{}' END::name[])
  FROM unnest(ARRAY['grant_topic', 'revoke_topic']) AS f
 CROSS JOIN unnest(ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin', 'public']) AS r
 ORDER BY f, r;

-- append / append_batch: writer only
SELECT function_privs_are('eventstore', 'append', ARRAY['text', 'jsonb', 'text', 'bigint'], 'eventstore_writer', ARRAY['EXECUTE']);
SELECT function_privs_are('eventstore', 'append', ARRAY['text', 'jsonb', 'text', 'bigint'], 'eventstore_reader', '{}'::name[]);
SELECT function_privs_are('eventstore', 'append', ARRAY['text', 'jsonb', 'text', 'bigint'], 'eventstore_admin', '{}'::name[]);
SELECT function_privs_are('eventstore', 'append', ARRAY['text', 'jsonb', 'text', 'bigint'], 'public', '{}'::name[]);
SELECT function_privs_are('eventstore', 'append_batch', ARRAY['text', 'jsonb[]', 'text', 'bigint'], 'eventstore_writer', ARRAY['EXECUTE']);
SELECT function_privs_are('eventstore', 'append_batch', ARRAY['text', 'jsonb[]', 'text', 'bigint'], 'eventstore_reader', '{}'::name[]);
SELECT function_privs_are('eventstore', 'append_batch', ARRAY['text', 'jsonb[]', 'text', 'bigint'], 'eventstore_admin', '{}'::name[]);
SELECT function_privs_are('eventstore', 'append_batch', ARRAY['text', 'jsonb[]', 'text', 'bigint'], 'public', '{}'::name[]);

-- read / read_stream / get: reader only
SELECT function_privs_are('eventstore', 'read', ARRAY['text', 'bigint', 'integer', 'text[]'], 'eventstore_writer', '{}'::name[]);
SELECT function_privs_are('eventstore', 'read', ARRAY['text', 'bigint', 'integer', 'text[]'], 'eventstore_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('eventstore', 'read', ARRAY['text', 'bigint', 'integer', 'text[]'], 'eventstore_admin', '{}'::name[]);
SELECT function_privs_are('eventstore', 'read', ARRAY['text', 'bigint', 'integer', 'text[]'], 'public', '{}'::name[]);
SELECT function_privs_are('eventstore', 'read_stream', ARRAY['text', 'text', 'bigint', 'integer', 'boolean'], 'eventstore_writer', '{}'::name[]);
SELECT function_privs_are('eventstore', 'read_stream', ARRAY['text', 'text', 'bigint', 'integer', 'boolean'], 'eventstore_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('eventstore', 'read_stream', ARRAY['text', 'text', 'bigint', 'integer', 'boolean'], 'eventstore_admin', '{}'::name[]);
SELECT function_privs_are('eventstore', 'read_stream', ARRAY['text', 'text', 'bigint', 'integer', 'boolean'], 'public', '{}'::name[]);
SELECT function_privs_are('eventstore', 'get', ARRAY['uuid'], 'eventstore_writer', '{}'::name[]);
SELECT function_privs_are('eventstore', 'get', ARRAY['uuid'], 'eventstore_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('eventstore', 'get', ARRAY['uuid'], 'eventstore_admin', '{}'::name[]);

-- stream state: stream_version, last_event and load_snapshot for readers,
-- save_snapshot for writers, close_stream for writers and admins
SELECT function_privs_are('eventstore', f.name, f.args, r,
                          CASE WHEN r = ANY (f.granted) THEN ARRAY['EXECUTE'] ELSE '{}' END::name[])
  FROM (VALUES ('stream_version', ARRAY['text', 'text'], ARRAY['eventstore_reader']),
               ('last_event', ARRAY['text', 'text'], ARRAY['eventstore_reader']),
               ('load_snapshot', ARRAY['text', 'text', 'bigint'], ARRAY['eventstore_reader']),
               ('save_snapshot', ARRAY['text', 'text', 'bigint', 'jsonb'], ARRAY['eventstore_writer']),
               ('close_stream', ARRAY['text', 'text'], ARRAY['eventstore_writer', 'eventstore_admin']))
       AS f(name, args, granted)
 CROSS JOIN unnest(ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin', 'public']) AS r
 ORDER BY f.name, r;
SELECT function_privs_are('eventstore', 'get', ARRAY['uuid'], 'public', '{}'::name[]);

-- internal helpers: nobody but the owner
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text || ' -> ' || r ORDER BY 1)
       FROM pg_proc p
       CROSS JOIN unnest(ARRAY['public', 'eventstore_writer', 'eventstore_reader', 'eventstore_admin']) AS r
      WHERE p.pronamespace = 'eventstore'::regnamespace
        AND p.proname IN ('check_read_args', 'topics_changed')
        AND has_function_privilege(r, p.oid, 'EXECUTE')),
    NULL,
    'the internal functions check_read_args and topics_changed are executable by none of the roles nor PUBLIC'
);

-- every function of the schema, now and later: nothing for PUBLIC
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text ORDER BY 1)
       FROM pg_proc p
      WHERE p.pronamespace = 'eventstore'::regnamespace
        AND (p.proacl IS NULL
             OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0))),
    NULL,
    'no function in schema eventstore is executable by PUBLIC (no NULL acl, no PUBLIC entry)'
);

------------------------------------------------------------------------------
-- Privileges in the catalogue: schema, tables, sequence, type
------------------------------------------------------------------------------

SELECT schema_privs_are('eventstore', 'eventstore_writer', ARRAY['USAGE']);
SELECT schema_privs_are('eventstore', 'eventstore_reader', ARRAY['USAGE']);
SELECT schema_privs_are('eventstore', 'eventstore_admin', ARRAY['USAGE']);
SELECT schema_privs_are('eventstore', 'public', '{}'::name[]);

-- events: nobody
SELECT table_privs_are('eventstore', 'events', 'eventstore_writer', '{}'::name[]);
SELECT table_privs_are('eventstore', 'events', 'eventstore_reader', '{}'::name[]);
SELECT table_privs_are('eventstore', 'events', 'eventstore_admin', '{}'::name[]);
SELECT table_privs_are('eventstore', 'events', 'public', '{}'::name[]);
-- stream_heads and snapshots: nobody
SELECT table_privs_are('eventstore', t, r, '{}'::name[])
  FROM unnest(ARRAY['stream_heads', 'snapshots', 'erased_streams', 'stream_name_key']) AS t
 CROSS JOIN unnest(ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin', 'public']) AS r
 ORDER BY t, r;
-- the view streams: readers and admins (rows filtered by topic)
SELECT table_privs_are('eventstore', 'streams', 'eventstore_writer', '{}'::name[]);
SELECT table_privs_are('eventstore', 'streams', 'eventstore_reader', ARRAY['SELECT']);
SELECT table_privs_are('eventstore', 'streams', 'eventstore_admin', ARRAY['SELECT']);
SELECT table_privs_are('eventstore', 'streams', 'public', '{}'::name[]);
-- the inbox takes rows from writers (and grant_topic's appenders) only
SELECT table_privs_are('eventstore', 'inbox', 'eventstore_writer', ARRAY['INSERT']);
SELECT table_privs_are('eventstore', 'inbox', 'eventstore_reader', '{}'::name[]);
SELECT table_privs_are('eventstore', 'inbox', 'eventstore_admin', '{}'::name[]);
SELECT table_privs_are('eventstore', 'inbox', 'public', '{}'::name[]);
-- topics: SELECT for the three roles, nothing for PUBLIC
SELECT table_privs_are('eventstore', 'topics', 'eventstore_writer', ARRAY['SELECT']);
SELECT table_privs_are('eventstore', 'topics', 'eventstore_reader', ARRAY['SELECT']);
SELECT table_privs_are('eventstore', 'topics', 'eventstore_admin', ARRAY['SELECT']);
SELECT table_privs_are('eventstore', 'topics', 'public', '{}'::name[]);
-- stored_events (view behind the reads): nobody
SELECT table_privs_are('eventstore', 'stored_events', 'eventstore_writer', '{}'::name[]);
SELECT table_privs_are('eventstore', 'stored_events', 'eventstore_reader', '{}'::name[]);
SELECT table_privs_are('eventstore', 'stored_events', 'eventstore_admin', '{}'::name[]);
SELECT table_privs_are('eventstore', 'stored_events', 'public', '{}'::name[]);
-- the identity sequence of events: nobody
SELECT sequence_privs_are('eventstore', 'events_position_seq', 'eventstore_writer', '{}'::name[]);
SELECT sequence_privs_are('eventstore', 'events_position_seq', 'eventstore_reader', '{}'::name[]);
SELECT sequence_privs_are('eventstore', 'events_position_seq', 'eventstore_admin', '{}'::name[]);
SELECT sequence_privs_are('eventstore', 'events_position_seq', 'public', '{}'::name[]);

-- column-level grants would bypass table_privs_are: there must be none
SELECT is(
    (SELECT array_agg(c.relname || '.' || a.attname ORDER BY 1)
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      WHERE c.relnamespace = 'eventstore'::regnamespace AND a.attacl IS NOT NULL),
    NULL,
    'no column-level grants in schema eventstore'
);

-- every relation of the schema, now and later: nothing for PUBLIC
SELECT is(
    (SELECT array_agg(c.relname::text ORDER BY 1)
       FROM pg_class c
      WHERE c.relnamespace = 'eventstore'::regnamespace
        AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
        AND (c.relacl IS NULL
             OR EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 0))),
    NULL,
    'no table, view or sequence in schema eventstore has privileges for PUBLIC'
);

-- every relation of the schema, now and later: no write privilege for the
-- roles, but the writers' INSERT into the inbox (a view that stores nothing:
-- its triggers append each row through append's checks)
SELECT is(
    (SELECT array_agg(c.relname || ' ' || r || ' ' || p ORDER BY 1)
       FROM pg_class c
       CROSS JOIN unnest(ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin']) AS r
       CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p
      WHERE c.relnamespace = 'eventstore'::regnamespace
        AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
        AND has_table_privilege(r, c.oid, p)
        AND NOT (c.relname = 'inbox' AND r = 'eventstore_writer' AND p = 'INSERT')),
    NULL,
    'no eventstore role may write to any table of schema eventstore directly (the writers may insert into the inbox)'
);

SELECT is(has_type_privilege('eventstore_writer', 'eventstore.event', 'USAGE'), true, 'eventstore_writer may use type eventstore.event');
SELECT is(has_type_privilege('eventstore_reader', 'eventstore.event', 'USAGE'), true, 'eventstore_reader may use type eventstore.event');
SELECT is(has_type_privilege('eventstore_admin', 'eventstore.event', 'USAGE'), true, 'eventstore_admin may use type eventstore.event');
SELECT is(
    (SELECT EXISTS (SELECT FROM pg_type t, aclexplode(t.typacl) a
                     WHERE t.oid = 'eventstore.event'::regtype AND a.grantee = 0)
            OR (SELECT typacl IS NULL FROM pg_type WHERE oid = 'eventstore.event'::regtype)),
    false,
    'PUBLIC has no privilege on type eventstore.event'
);

------------------------------------------------------------------------------
-- SECURITY DEFINER functions: which ones, and their fixed search_path
------------------------------------------------------------------------------

SELECT set_eq(
    $$SELECT p.oid::regprocedure::text FROM pg_proc p
       WHERE p.pronamespace = 'eventstore'::regnamespace AND p.prosecdef$$,
    ARRAY['eventstore.create_topic(text,text,interval)',
          'eventstore.grant_topic(text,text,regrole)',
          'eventstore.revoke_topic(text,text,regrole)',
          -- retention and the archive publication
          'eventstore.set_retention(text,interval)',
          'eventstore.purge_expired()',
          'eventstore.set_cleanup_retention(text,interval)',
          -- derived ids under a key (updated installations)
          'eventstore.set_derived_id_key()',
          'eventstore.publish_archive()',
          'eventstore.read(text,bigint,integer,text[])',
          'eventstore.read_stream(text,text,bigint,integer,boolean)',
          'eventstore.get(uuid)',
          -- stream state and snapshots
          'eventstore.read_correlated(uuid)',
          'eventstore.stream_version(text,text)',
          'eventstore.last_event(text,text)',
          'eventstore.close_stream(text,text)',
          'eventstore.save_snapshot(text,text,bigint,jsonb)',
          'eventstore.load_snapshot(text,text,bigint)',
          -- the consumer API (checked in detail by consumer_privileges.sql);
          -- create_consumer, create_upcaster, poll, ack and nack check their
          -- caller, so they run as the caller (C) and switch to the owner
          -- themselves
          'eventstore.drop_consumer(text)',
          'eventstore.reset_consumer(text,bigint)',
          'eventstore.set_consumer_members(text,integer)',
          'eventstore.replay_parked(text,uuid)',
          'eventstore.set_topic_version(text,text)',
          'eventstore.undelivered(text)',
          'eventstore.member_status(text,integer,integer)',
          -- crypto-shredding; unprotect checks its caller, so it is C
          'eventstore.protect_fields(text,text,text[])',
          'eventstore.forget_subject(text)'],
    'exactly create_topic, grant_topic, revoke_topic, set_retention, purge_expired, set_cleanup_retention, set_derived_id_key, publish_archive, read, read_stream, get, '
    'read_correlated, stream_version, last_event, close_stream, save_snapshot, load_snapshot, the consumer API''s drop_consumer, reset_consumer, '
    'set_consumer_members, replay_parked, set_topic_version, undelivered and member_status, and protect_fields and forget_subject are SECURITY DEFINER'
);
SELECT is_definer('eventstore', 'create_topic', ARRAY['text', 'text', 'interval'], 'create_topic is SECURITY DEFINER');
SELECT is_definer('eventstore', 'read', ARRAY['text', 'bigint', 'integer', 'text[]'], 'read is SECURITY DEFINER');
SELECT is_definer('eventstore', 'read_stream', ARRAY['text', 'text', 'bigint', 'integer', 'boolean'], 'read_stream is SECURITY DEFINER');
SELECT is_definer('eventstore', 'get', ARRAY['uuid'], 'get is SECURITY DEFINER');
SELECT is(
    (SELECT proconfig FROM pg_proc WHERE oid = 'eventstore.create_topic(text,text,interval)'::regprocedure),
    ARRAY['search_path=pg_catalog, pg_temp'],
    'create_topic has search_path = pg_catalog, pg_temp'
);
SELECT is(
    (SELECT proconfig FROM pg_proc WHERE oid = 'eventstore.read(text,bigint,integer,text[])'::regprocedure),
    ARRAY['search_path=pg_catalog, pg_temp'],
    'read has search_path = pg_catalog, pg_temp'
);
SELECT is(
    (SELECT proconfig FROM pg_proc WHERE oid = 'eventstore.read_stream(text,text,bigint,integer,boolean)'::regprocedure),
    ARRAY['search_path=pg_catalog, pg_temp'],
    'read_stream has search_path = pg_catalog, pg_temp'
);
SELECT is(
    (SELECT proconfig FROM pg_proc WHERE oid = 'eventstore.get(uuid)'::regprocedure),
    ARRAY['search_path=pg_catalog, pg_temp'],
    'get has search_path = pg_catalog, pg_temp'
);
-- now and later: every SECURITY DEFINER function pins a search_path that
-- ends with pg_temp (so temp objects cannot shadow anything)
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text ORDER BY 1)
       FROM pg_proc p
      WHERE p.pronamespace = 'eventstore'::regnamespace AND p.prosecdef
        AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c
                         WHERE c LIKE 'search\_path=%' AND c LIKE '%pg\_temp')),
    NULL,
    'every SECURITY DEFINER function of eventstore sets search_path ending with pg_temp'
);

------------------------------------------------------------------------------
-- Crypto-shredding: protect_fields, forget_subject, unprotect, the key table
------------------------------------------------------------------------------

-- protect_fields and forget_subject: admin only; unprotect: reader only
SELECT function_privs_are('eventstore', f, a, r,
                          CASE WHEN r = g THEN ARRAY['EXECUTE'] ELSE '{}' END::name[])
  FROM (VALUES ('protect_fields', ARRAY['text', 'text', 'text[]'], 'eventstore_admin'),
               ('forget_subject', ARRAY['text'], 'eventstore_admin'),
               ('unprotect', ARRAY['eventstore.event'], 'eventstore_reader')) AS v(f, a, g)
 CROSS JOIN unnest(ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin', 'public']) AS r
 ORDER BY f, r;
-- unprotect decides by its caller's membership in eventstore_decrypt, so it
-- runs as the caller (C) and switches to the owner itself
SELECT isnt_definer('eventstore', 'unprotect', ARRAY['eventstore.event'], 'unprotect is not SECURITY DEFINER');
SELECT is((SELECT l.lanname::text FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
            WHERE p.oid = 'eventstore.unprotect(eventstore.event)'::regprocedure),
    'c', 'unprotect is a C function');
-- the internal helpers: nobody but the owner
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text || ' -> ' || r ORDER BY 1)
       FROM pg_proc p
       CROSS JOIN unnest(ARRAY['public', 'eventstore_writer', 'eventstore_reader', 'eventstore_admin',
                               'eventstore_decrypt']) AS r
      WHERE p.pronamespace = 'eventstore'::regnamespace
        AND p.proname IN ('crypto_schema', 'crypt_field', 'check_protect_path', 'subject_key',
                          'protect_data', 'unprotect_as')
        AND has_function_privilege(r, p.oid, 'EXECUTE')),
    NULL,
    'crypto_schema, crypt_field, check_protect_path, subject_key, protect_data and unprotect_as are executable by none of the roles nor PUBLIC'
);
-- subject_keys: readable by the owner only
SELECT table_privs_are('eventstore', 'subject_keys', r, '{}'::name[])
  FROM unnest(ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin', 'eventstore_decrypt', 'public']) AS r;
-- protections: SELECT for the three roles, like topics
SELECT table_privs_are('eventstore', 'protections', r,
                       CASE WHEN r = 'public' THEN '{}' ELSE ARRAY['SELECT'] END::name[])
  FROM unnest(ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin', 'public']) AS r;

------------------------------------------------------------------------------
-- Behaviour: test roles and data
------------------------------------------------------------------------------

CREATE ROLE es_test_writer NOLOGIN IN ROLE eventstore_writer;
CREATE ROLE es_test_reader NOLOGIN IN ROLE eventstore_reader;
CREATE ROLE es_test_admin NOLOGIN IN ROLE eventstore_admin;
CREATE ROLE es_test_nobody NOLOGIN;

SELECT lives_ok($$SELECT eventstore.create_topic('es_priv', '1.0')$$,
    'setup: the owner creates topic es_priv');
SELECT lives_ok(
    $$SELECT eventstore.append('es_priv',
        '{"id": "00000000-0000-4000-8000-000000000001", "type": "new", "version": "1.0",
          "data": {}, "metadata": {"source": "test/privileges", "time": "2024-01-01T00:00:00Z"}}',
        'one')$$,
    'setup: the owner appends the first event of stream one');

------------------------------------------------------------------------------
-- Behaviour: writer
------------------------------------------------------------------------------

SET LOCAL ROLE es_test_writer;

SELECT lives_ok(
    $$SELECT eventstore.append('es_priv',
        '{"id": "00000000-0000-4000-8000-000000000002", "type": "new", "version": "1.0",
          "data": {}, "metadata": {"source": "test/privileges", "time": "2024-01-01T00:00:01Z"}}')$$,
    'writer can append'
);
SELECT lives_ok(
    $$SELECT eventstore.append('es_priv',
        '{"id": "00000000-0000-4000-8000-000000000003", "type": "new", "version": "1.0",
          "data": {}, "metadata": {"source": "test/privileges", "time": "2024-01-01T00:00:02Z"}}',
        'one', 1)$$,
    'writer can append to a stream with an expected version'
);
SELECT lives_ok(
    $$SELECT eventstore.append_batch('es_priv', ARRAY[
        '{"id": "00000000-0000-4000-8000-000000000004", "type": "new", "version": "1.0",
          "data": {}, "metadata": {"source": "test/privileges", "time": "2024-01-01T00:00:03Z"}}',
        '{"id": "00000000-0000-4000-8000-000000000005", "type": "new", "version": "1.0",
          "data": {}, "metadata": {"source": "test/privileges", "time": "2024-01-01T00:00:04Z"}}'
        ]::jsonb[], 'one')$$,
    'writer can append_batch'
);
SELECT lives_ok(
    $$SELECT eventstore.validate('{"id": "00000000-0000-4000-8000-000000000006", "type": "new",
        "version": "1.0", "data": {}, "metadata": {"source": "s", "time": "2024-01-01T00:00:00Z"}}')$$,
    'writer can validate'
);
SELECT throws_ok($$SELECT * FROM eventstore.read('es_priv')$$, '42501', NULL, 'writer cannot read');
SELECT throws_ok($$SELECT * FROM eventstore.read_stream('es_priv', 'one')$$, '42501', NULL, 'writer cannot read_stream');
SELECT throws_ok($$SELECT eventstore.get('00000000-0000-4000-8000-000000000001')$$, '42501', NULL, 'writer cannot get');
SELECT throws_ok($$SELECT eventstore.create_topic('es_priv_w')$$, '42501', NULL, 'writer cannot create_topic');
SELECT throws_ok(
    $$INSERT INTO eventstore.events (id, topic, type, version_major, version_minor, data, metadata, xid)
      VALUES ('00000000-0000-4000-8000-0000000000f1', 'es_priv', 'new', 1, 0, '{}', '{}', pg_current_xact_id())$$,
    '42501', NULL, 'writer cannot INSERT into events directly');
SELECT throws_ok($$UPDATE eventstore.events SET data = '{"x": 1}'$$, '42501', NULL, 'writer cannot UPDATE events');
SELECT throws_ok($$DELETE FROM eventstore.events$$, '42501', NULL, 'writer cannot DELETE events');
SELECT throws_ok($$TRUNCATE eventstore.events$$, '42501', NULL, 'writer cannot TRUNCATE events');
SELECT throws_ok($$SELECT * FROM eventstore.events$$, '42501', NULL, 'writer cannot SELECT events directly');
SELECT throws_ok($$UPDATE eventstore.stream_heads SET version_floor = 100$$, '42501', NULL, 'writer cannot UPDATE stream_heads');
SELECT throws_ok($$DELETE FROM eventstore.stream_heads$$, '42501', NULL, 'writer cannot DELETE stream_heads');
SELECT throws_ok($$DELETE FROM eventstore.snapshots$$, '42501', NULL, 'writer cannot DELETE snapshots');
SELECT throws_ok($$INSERT INTO eventstore.topics (name, current_major, current_minor) VALUES ('es_priv_w', 1, 0)$$,
    '42501', NULL, 'writer cannot INSERT into topics directly');
SELECT throws_ok($$DELETE FROM eventstore.topics$$, '42501', NULL, 'writer cannot DELETE topics');
SELECT lives_ok($$SELECT name FROM eventstore.topics$$, 'writer can SELECT topics');

RESET ROLE;

SELECT is(
    (SELECT array_agg(id::text || ' ' || coalesce(stream, '-') || ' ' || coalesce(stream_version::text, '-') ORDER BY position)
       FROM eventstore.events),
    ARRAY['00000000-0000-4000-8000-000000000001 one 1',
          '00000000-0000-4000-8000-000000000002 - -',
          '00000000-0000-4000-8000-000000000003 one 2',
          '00000000-0000-4000-8000-000000000004 one 3',
          '00000000-0000-4000-8000-000000000005 one 4'],
    'the writer''s appends are stored, and its refused UPDATE/DELETE changed nothing'
);

------------------------------------------------------------------------------
-- Behaviour: reader
------------------------------------------------------------------------------

SET LOCAL ROLE es_test_reader;

SELECT lives_ok($$SELECT * FROM eventstore.read('es_priv')$$, 'reader can read');
SELECT is(
    (SELECT array_agg(stream_version ORDER BY stream_version) FROM eventstore.read_stream('es_priv', 'one')),
    ARRAY[1, 2, 3, 4]::bigint[],
    'reader can read_stream: the stream''s four versions'
);
SELECT is(
    (SELECT count(*) FROM eventstore.read('es_priv')),
    5::bigint,
    'reader reads all five events of the topic'
);
SELECT is(
    (SELECT (eventstore.get('00000000-0000-4000-8000-000000000003')).envelope->>'id'),
    '00000000-0000-4000-8000-000000000003',
    'reader can get an event by id'
);
SELECT throws_ok(
    $$SELECT eventstore.append('es_priv',
        '{"id": "00000000-0000-4000-8000-0000000000a1", "type": "new", "version": "1.0",
          "data": {}, "metadata": {"source": "test/privileges", "time": "2024-01-01T00:00:00Z"}}')$$,
    '42501', NULL, 'reader cannot append');
SELECT throws_ok(
    $$SELECT eventstore.append_batch('es_priv', ARRAY[
        '{"id": "00000000-0000-4000-8000-0000000000a2", "type": "new", "version": "1.0",
          "data": {}, "metadata": {"source": "test/privileges", "time": "2024-01-01T00:00:00Z"}}'
        ]::jsonb[])$$,
    '42501', NULL, 'reader cannot append_batch');
SELECT throws_ok($$SELECT eventstore.create_topic('es_priv_r')$$, '42501', NULL, 'reader cannot create_topic');
SELECT throws_ok($$UPDATE eventstore.events SET data = '{"x": 1}'$$, '42501', NULL, 'reader cannot UPDATE events');
SELECT throws_ok($$DELETE FROM eventstore.events$$, '42501', NULL, 'reader cannot DELETE events');
SELECT throws_ok(
    $$INSERT INTO eventstore.events (id, topic, type, version_major, version_minor, data, metadata, xid)
      VALUES ('00000000-0000-4000-8000-0000000000f2', 'es_priv', 'new', 1, 0, '{}', '{}', pg_current_xact_id())$$,
    '42501', NULL, 'reader cannot INSERT into events directly');
SELECT throws_ok($$TRUNCATE eventstore.events$$, '42501', NULL, 'reader cannot TRUNCATE events');
SELECT throws_ok($$SELECT * FROM eventstore.events$$, '42501', NULL, 'reader cannot SELECT events directly (only through the API)');
SELECT throws_ok($$SELECT * FROM eventstore.stored_events$$, '42501', NULL, 'reader cannot SELECT stored_events directly');
SELECT throws_ok($$UPDATE eventstore.topics SET current_major = 9$$, '42501', NULL, 'reader cannot UPDATE topics');
SELECT throws_ok($$SELECT eventstore.check_read_args('es_priv', 1)$$, '42501', NULL, 'reader cannot call the internal check_read_args');

RESET ROLE;

------------------------------------------------------------------------------
-- Behaviour: admin
------------------------------------------------------------------------------

SET LOCAL ROLE es_test_admin;

SELECT lives_ok($$SELECT eventstore.create_topic('es_priv_admin', '2.1', interval '30 days')$$, 'admin can create_topic');
SELECT throws_ok(
    $$SELECT eventstore.append('es_priv',
        '{"id": "00000000-0000-4000-8000-0000000000b1", "type": "new", "version": "1.0",
          "data": {}, "metadata": {"source": "test/privileges", "time": "2024-01-01T00:00:00Z"}}')$$,
    '42501', NULL, 'admin cannot append');
SELECT throws_ok(
    $$SELECT eventstore.append_batch('es_priv', ARRAY[
        '{"id": "00000000-0000-4000-8000-0000000000b2", "type": "new", "version": "1.0",
          "data": {}, "metadata": {"source": "test/privileges", "time": "2024-01-01T00:00:00Z"}}'
        ]::jsonb[])$$,
    '42501', NULL, 'admin cannot append_batch');
SELECT throws_ok($$SELECT * FROM eventstore.read('es_priv')$$, '42501', NULL, 'admin cannot read');
SELECT throws_ok($$SELECT * FROM eventstore.read_stream('es_priv', 'one')$$, '42501', NULL, 'admin cannot read_stream');
SELECT throws_ok($$SELECT eventstore.get('00000000-0000-4000-8000-000000000001')$$, '42501', NULL, 'admin cannot get');
SELECT throws_ok($$INSERT INTO eventstore.topics (name, current_major, current_minor) VALUES ('es_priv_a', 1, 0)$$,
    '42501', NULL, 'admin cannot INSERT into topics directly (only through create_topic)');
SELECT throws_ok($$UPDATE eventstore.topics SET current_major = 9$$, '42501', NULL, 'admin cannot UPDATE topics');
SELECT throws_ok($$DELETE FROM eventstore.topics$$, '42501', NULL, 'admin cannot DELETE topics');
SELECT throws_ok($$DELETE FROM eventstore.events$$, '42501', NULL, 'admin cannot DELETE events');
SELECT throws_ok($$UPDATE eventstore.events SET data = '{}'$$, '42501', NULL, 'admin cannot UPDATE events');

RESET ROLE;

SELECT results_eq(
    $$SELECT name COLLATE "default", current_major, current_minor, retention FROM eventstore.topics ORDER BY name$$,
    $$VALUES ('es_priv'::text, 1, 0, NULL::interval), ('es_priv_admin', 2, 1, interval '30 days')$$,
    'the admin''s topic exists with its version and retention; the refused UPDATE/DELETE changed nothing'
);

------------------------------------------------------------------------------
-- Behaviour: a role with no eventstore role can do nothing
------------------------------------------------------------------------------

SET LOCAL ROLE es_test_nobody;

SELECT throws_ok($$SELECT eventstore.validate('{}')$$, '42501', NULL, 'unprivileged role cannot validate');
SELECT throws_ok($$SELECT eventstore.is_valid('{}')$$, '42501', NULL, 'unprivileged role cannot is_valid');
SELECT throws_ok($$SELECT eventstore.create_topic('es_priv_n')$$, '42501', NULL, 'unprivileged role cannot create_topic');
SELECT throws_ok(
    $$SELECT eventstore.append('es_priv',
        '{"id": "00000000-0000-4000-8000-0000000000c1", "type": "new", "version": "1.0",
          "data": {}, "metadata": {"source": "test/privileges", "time": "2024-01-01T00:00:00Z"}}')$$,
    '42501', NULL, 'unprivileged role cannot append');
SELECT throws_ok(
    $$SELECT eventstore.append_batch('es_priv', ARRAY[
        '{"id": "00000000-0000-4000-8000-0000000000c2", "type": "new", "version": "1.0",
          "data": {}, "metadata": {"source": "test/privileges", "time": "2024-01-01T00:00:00Z"}}'
        ]::jsonb[])$$,
    '42501', NULL, 'unprivileged role cannot append_batch');
SELECT throws_ok($$SELECT * FROM eventstore.read('es_priv')$$, '42501', NULL, 'unprivileged role cannot read');
SELECT throws_ok($$SELECT * FROM eventstore.read_stream('es_priv', 'one')$$, '42501', NULL, 'unprivileged role cannot read_stream');
SELECT throws_ok($$SELECT eventstore.get('00000000-0000-4000-8000-000000000001')$$, '42501', NULL, 'unprivileged role cannot get');
SELECT throws_ok($$SELECT * FROM eventstore.topics$$, '42501', 'permission denied for schema eventstore',
    'unprivileged role has no USAGE on schema eventstore');
SELECT throws_ok($$DELETE FROM eventstore.events$$, '42501', NULL, 'unprivileged role cannot DELETE events');
SELECT throws_ok($$SELECT NULL::eventstore.event$$, '42501', NULL, 'unprivileged role cannot use type eventstore.event');
SELECT is(has_schema_privilege('eventstore', 'USAGE'), false, 'unprivileged role: has_schema_privilege(USAGE) is false');

RESET ROLE;

SELECT is((SELECT count(*) FROM eventstore.events), 5::bigint,
    'after all refused attempts, exactly the five legitimate events are stored');

SELECT * FROM finish();
ROLLBACK;
