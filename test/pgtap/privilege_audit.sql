-- test/pgtap/privilege_audit.sql: the privilege audit of both extensions,
-- made for the 1.0 release.  Name injection is audited in test/pgtap/injection.sql.
--
-- What it audits, catalogue-driven, so that nothing new escapes it:
--
--  1. Who may execute every function of eventstore and birdwatch.  The
--     functions are found through pg_depend (deptype 'e'), internal and
--     trigger functions included, and for each the test computes whether
--     it is SECURITY DEFINER and which of these may EXECUTE it
--     (has_function_privilege, so through membership too): PUBLIC, the
--     eventstore_* roles, the birdwatch_* roles and pa_nobody, a LOGIN role
--     the test creates without any grant.  That is compared both ways with
--     the expected table below: a function without an entry, an entry
--     without a function and every difference fail with the function's
--     name.  ACLs may name no other role.
--  2. SECURITY DEFINER functions (and every SQL or PL/pgSQL function: C
--     entry points run them as the extension's owner) pin search_path to
--     schemas no ordinary role can create objects in, pg_temp last, no
--     public and no $user.  The code that runs as a consumer or upcaster
--     role belongs to that role, and never runs as a superuser.
--  3. Shadowing: a caller with the API's roles and CREATE on public plants
--     functions and operators in public and pg_temp that shadow those the
--     extensions use (=, ||, ->, ~, lower, now, jsonb_build_object, ...;
--     each raises "shadow ... executed", SQLSTATE PA001), tables in pg_temp
--     named like the extensions' tables, and calls the whole API, the C
--     entry points that run SPI included, with search_path public, then
--     pg_catalog (pg_temp first for tables, as by default).  Nothing may
--     run a shadow or touch a pg_temp table.
--  4. The hole this audit found (fixed in birdwatch--0.1--1.0.sql): the
--     rate upcaster ran as the superuser who created the extension; a
--     member of birdwatch_tick_api that may create in public made its
--     function SECURITY INVOKER with its own search_path and so ran an
--     operator of its own as that superuser.  The attack is replayed.
--  5. An unprivileged LOGIN role can neither read events nor personal
--     data, nor append, nor create, alter, run or drop consumers, nor grant
--     or erase: 42501 for every call and table, and no privilege at all on
--     the extensions' schemas, relations and types.
--
-- Updating the expected table: a new function needs a row (extension,
-- regprocedure text, SECURITY DEFINER, roles that may execute it, sorted,
-- 'PUBLIC' for PUBLIC).  The roles are the effective ones: a role granted
-- eventstore_reader is listed wherever eventstore_reader is, and so are
-- the roles grant_topic() gives functions to.  Print the actual table
-- with the query that fills pa_actual below when a change is intended,
-- and check each changed row against README.md "Roles and privileges" and
-- BIRDWATCH.md "Services, roles and what each may do".
--
-- Everything happens in one transaction that is rolled back, test roles
-- included.

BEGIN;
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS birdwatch CASCADE;
RESET client_min_messages;

DO $$
BEGIN
    -- Test roles: pa_nobody logs in and holds nothing; pa_es and pa_bw are
    -- callers of the eventstore and birdwatch APIs that may create in
    -- public; pa_tick is a member of birdwatch_tick_api that may too.
    CREATE ROLE pa_nobody LOGIN;
    CREATE ROLE pa_es LOGIN IN ROLE eventstore_writer, eventstore_reader, eventstore_admin,
                                    eventstore_decrypt;
    CREATE ROLE pa_bw LOGIN IN ROLE birdwatch_app, birdwatch_notifier, birdwatch_admin_api,
                                    birdwatch_score_model, birdwatch_statistics,
                                    birdwatch_user_api, eventstore_admin;
    CREATE ROLE pa_tick LOGIN IN ROLE birdwatch_tick_api;
    GRANT CREATE ON SCHEMA public TO pa_es, pa_bw, pa_tick;
END
$$;

------------------------------------------------------------------------------
-- 1. Who may execute what
------------------------------------------------------------------------------

CREATE TEMP TABLE pa_roles (role text PRIMARY KEY);
INSERT INTO pa_roles
SELECT 'PUBLIC' UNION ALL SELECT 'pa_nobody'
-- pg_monitor, PostgreSQL's role for monitoring, reads eventstore.stats
UNION ALL SELECT 'pg_monitor'
UNION ALL SELECT rolname FROM pg_roles WHERE rolname ~ '^(eventstore|birdwatch)_';

CREATE TEMP TABLE pa_expected (ext text, fn text PRIMARY KEY, secdef boolean, execute text[]);
INSERT INTO pa_expected (ext, fn, secdef, execute) VALUES
    -- eventstore: the API (README "Roles and privileges"), with the functions
    -- grant_topic() gave birdwatch's services and birdwatch_export's
    -- membership of eventstore_reader
('eventstore', 'eventstore.ack(text,bigint)', false, '{birdwatch_export,birdwatch_notifier,birdwatch_score_model,birdwatch_statistics,birdwatch_tick_api,birdwatch_user_api,eventstore_reader}'),
    ('eventstore', 'eventstore.append(text,jsonb,text,bigint)', false, '{birdwatch_audit,birdwatch_auth_api,birdwatch_notifier,birdwatch_score_model,birdwatch_tick_api,eventstore_writer}'),
    ('eventstore', 'eventstore.append_batch(text,jsonb[],text,bigint)', false, '{birdwatch_audit,birdwatch_auth_api,birdwatch_notifier,birdwatch_score_model,birdwatch_tick_api,eventstore_writer}'),
    ('eventstore', 'eventstore.create_consumer(text,text[],regprocedure,integer,integer,regrole,text[],integer)', false, '{eventstore_admin}'),
    ('eventstore', 'eventstore.create_topic(text,text,interval)', true, '{eventstore_admin}'),
    ('eventstore', 'eventstore.create_upcaster(text,integer,integer,regprocedure)', false, '{eventstore_admin}'),
    ('eventstore', 'eventstore.derived_id(uuid,text)', false, '{birdwatch_audit,birdwatch_auth_api,birdwatch_export,birdwatch_notifier,birdwatch_score_model,birdwatch_statistics,birdwatch_tick_api,birdwatch_user_api,eventstore_admin,eventstore_reader,eventstore_writer}'),
    ('eventstore', 'eventstore.drop_consumer(text)', true, '{eventstore_admin}'),
    ('eventstore', 'eventstore.erase_stream(text,text)', false, '{birdwatch_user_api,eventstore_admin}'),
    ('eventstore', 'eventstore.truncate_stream(text,text,bigint)', false, '{birdwatch_user_api,eventstore_admin}'),
    ('eventstore', 'eventstore.set_stream_max_count(text,text,bigint)', false, '{birdwatch_user_api,eventstore_admin}'),
    ('eventstore', 'eventstore.forget_subject(text)', true, '{birdwatch_user_api,eventstore_admin}'),
    ('eventstore', 'eventstore.get(uuid)', true, '{birdwatch_export,eventstore_reader}'),
    ('eventstore', 'eventstore.grant_topic(text,text,regrole)', true, '{eventstore_admin}'),
    ('eventstore', 'eventstore.is_valid(jsonb)', false, '{birdwatch_audit,birdwatch_auth_api,birdwatch_export,birdwatch_notifier,birdwatch_score_model,birdwatch_tick_api,eventstore_admin,eventstore_reader,eventstore_writer}'),
    ('eventstore', 'eventstore.nack(text,bigint,text)', false, '{birdwatch_export,birdwatch_notifier,birdwatch_score_model,birdwatch_statistics,birdwatch_tick_api,birdwatch_user_api,eventstore_reader}'),
    ('eventstore', 'eventstore.poll(text,integer,integer)', false, '{birdwatch_export,birdwatch_notifier,birdwatch_score_model,birdwatch_statistics,birdwatch_tick_api,birdwatch_user_api,eventstore_reader}'),
    ('eventstore', 'eventstore.protect_fields(text,text,text[])', true, '{eventstore_admin}'),
    ('eventstore', 'eventstore.publish_archive()', true, '{eventstore_admin}'),
    ('eventstore', 'eventstore.purge_expired()', true, '{eventstore_admin}'),
    ('eventstore', 'eventstore.read(text,bigint,integer,text[])', true, '{birdwatch_export,eventstore_reader}'),
    ('eventstore', 'eventstore.read_stream(text,text,bigint,integer,boolean)', true, '{birdwatch_export,eventstore_reader}'),
    ('eventstore', 'eventstore.stream_version(text,text)', true, '{birdwatch_export,eventstore_reader}'),
    ('eventstore', 'eventstore.last_event(text,text)', true, '{birdwatch_export,eventstore_reader}'),
    ('eventstore', 'eventstore.load_snapshot(text,text,bigint)', true, '{birdwatch_export,eventstore_reader}'),
    ('eventstore', 'eventstore.save_snapshot(text,text,bigint,jsonb)', true, '{eventstore_writer}'),
    ('eventstore', 'eventstore.safe_position()', false, '{birdwatch_export,eventstore_reader}'),
    ('eventstore', 'eventstore.read_correlated(uuid)', true, '{birdwatch_export,eventstore_reader}'),
    ('eventstore', 'eventstore.close_stream(text,text)', true, '{eventstore_admin,eventstore_writer}'),
    ('eventstore', 'eventstore.replay_parked(text,uuid)', true, '{eventstore_admin}'),
    ('eventstore', 'eventstore.reset_consumer(text,bigint)', true, '{eventstore_admin}'),
    ('eventstore', 'eventstore.set_consumer_members(text,integer)', true, '{eventstore_admin}'),
    ('eventstore', 'eventstore.revoke_topic(text,text,regrole)', true, '{eventstore_admin}'),
    ('eventstore', 'eventstore.run_consumer(text,integer)', false, '{eventstore_admin}'),
    ('eventstore', 'eventstore.set_retention(text,interval)', true, '{eventstore_admin}'),
    ('eventstore', 'eventstore.set_cleanup_retention(text,interval)', true, '{eventstore_admin}'),
    ('eventstore', 'eventstore.set_derived_id_key()', true, '{eventstore_admin}'),
    ('eventstore', 'eventstore.set_topic_version(text,text)', true, '{eventstore_admin}'),
    ('eventstore', 'eventstore.stats_counters()', false, '{birdwatch_export,eventstore_admin,eventstore_reader,pg_monitor}'),
    ('eventstore', 'eventstore.stats_reset()', false, '{eventstore_admin}'),
    ('eventstore', 'eventstore.undelivered(text)', true, '{birdwatch_admin_api,birdwatch_export,eventstore_admin,eventstore_reader}'),
    ('eventstore', 'eventstore.member_status(text,integer,integer)', true, '{birdwatch_export,eventstore_admin,eventstore_reader}'),
    ('eventstore', 'eventstore.unprotect(eventstore.event)', false, '{birdwatch_export,birdwatch_notifier,birdwatch_score_model,birdwatch_statistics,birdwatch_tick_api,birdwatch_user_api,eventstore_reader}'),
    ('eventstore', 'eventstore.upcast(eventstore.event)', false, '{birdwatch_export,birdwatch_notifier,birdwatch_score_model,birdwatch_statistics,birdwatch_tick_api,birdwatch_user_api,eventstore_reader}'),
    ('eventstore', 'eventstore.validate(jsonb)', false, '{birdwatch_audit,birdwatch_auth_api,birdwatch_export,birdwatch_notifier,birdwatch_score_model,birdwatch_tick_api,eventstore_admin,eventstore_reader,eventstore_writer}'),
    -- eventstore: internals, run by the C entry points as the extension's
    -- owner or by its own functions; trigger and helper functions too
    ('eventstore', 'eventstore.archive_row_filter()', false, '{}'),
    ('eventstore', 'eventstore.check_consumer_name(text)', false, '{}'),
    ('eventstore', 'eventstore.check_protect_path(text,text)', false, '{}'),
    ('eventstore', 'eventstore.check_read_args(text,integer)', false, '{}'),
    ('eventstore', 'eventstore.check_stream_args(text,text,integer)', false, '{}'),
    ('eventstore', 'eventstore.check_topic_grant_args(text,text,regrole)', false, '{}'),
    ('eventstore', 'eventstore.check_topics_readable(oid,text[],text)', false, '{}'),
    ('eventstore', 'eventstore.consumers_changed()', false, '{}'),
    ('eventstore', 'eventstore.crypt_field(boolean,bytea,uuid,text,bytea)', false, '{}'),
    ('eventstore', 'eventstore.crypto_schema()', false, '{}'),
    ('eventstore', 'eventstore.erase_stream_as(text,text,oid)', false, '{}'),
    ('eventstore', 'eventstore.truncate_stream_as(text,text,bigint,oid)', false, '{}'),
    ('eventstore', 'eventstore.set_stream_max_count_as(text,text,bigint,oid)', false, '{}'),
    ('eventstore', 'eventstore.remove_stream_events(text,text,bigint)', false, '{}'),
    ('eventstore', 'eventstore.check_erase_allowed(text,oid)', false, '{}'),
    ('eventstore', 'eventstore.stream_digest(text)', false, '{}'),
    ('eventstore', 'eventstore.head_version(text,text,bigint)', false, '{}'),
    ('eventstore', 'eventstore.lock_stream(text,text)', false, '{}'),
    ('eventstore', 'eventstore.is_undelivered(eventstore.consumers,text,uuid,bigint,xid8)', false, '{}'),
    ('eventstore', 'eventstore.check_member_count(integer)', false, '{}'),
    ('eventstore', 'eventstore.member_of(text,uuid,integer)', false, '{}'),
    ('eventstore', 'eventstore.member_undelivered(eventstore.members)', false, '{}'),
    ('eventstore', 'eventstore.member_is_undelivered(eventstore.members,bigint,xid8)', false, '{}'),
    ('eventstore', 'eventstore.start_members(text,integer,integer,bigint,pg_snapshot,bigint,bigint,bigint)', false, '{}'),
    ('eventstore', 'eventstore.wait_for_batches(text)', false, '{}'),
    ('eventstore', 'eventstore.window_floor()', false, '{}'),
    ('eventstore', 'eventstore.in_extension_script()', false, '{}'),
    ('eventstore', 'eventstore.installation_changed()', false, '{}'),
    ('eventstore', 'eventstore.restored_row_replaces()', false, '{}'),
    ('eventstore', 'eventstore.subtransaction_id()', false, '{}'),
    ('eventstore', 'eventstore.rebase_restored()', false, '{}'),
    ('eventstore', 'eventstore.snapshot_with(pg_snapshot,xid8[])', false, '{}'),
    ('eventstore', 'eventstore.rebase_if_restored()', false, '{}'),
    ('eventstore', 'eventstore.lock_consumer(text,text)', false, '{}'),
    ('eventstore', 'eventstore.protect_data(text,jsonb,uuid,integer)', false, '{}'),
    ('eventstore', 'eventstore.purge_batch(integer)', false, '{}'),
    ('eventstore', 'eventstore.run_cleanups(bigint)', false, '{}'),
    ('eventstore', 'eventstore.check_cleanup_retention(interval)', false, '{}'),
    ('eventstore', 'eventstore.register_cleanup(text,regprocedure,interval)', false, '{}'),
    ('eventstore', 'eventstore.replace_retention_cleanup()', false, '{}'),
    ('eventstore', 'eventstore.replace_derived_id_key()', false, '{}'),
    ('eventstore', 'eventstore.derived_id_key_changed()', false, '{}'),
    ('eventstore', 'eventstore.inbox_begin()', false, '{}'),
    ('eventstore', 'eventstore.inbox_row()', false, '{}'),
    ('eventstore', 'eventstore.inbox_end()', false, '{}'),
    ('eventstore', 'eventstore.refresh_archive()', false, '{}'),
    ('eventstore', 'eventstore.register_consumer(text,text[],regprocedure,integer,integer,regrole,text[],integer)', false, '{}'),
    ('eventstore', 'eventstore.register_upcaster(text,integer,integer,regprocedure,regrole)', false, '{}'),
    ('eventstore', 'eventstore.stats_count_purged(text,bigint)', false, '{}'),
    ('eventstore', 'eventstore.subject_key(text)', false, '{}'),
    ('eventstore', 'eventstore.topic_privilege_column(text)', false, '{}'),
    ('eventstore', 'eventstore.topic_privilege_functions(text)', false, '{}'),
    ('eventstore', 'eventstore.topic_privileges_of(regrole)', false, '{}'),
    ('eventstore', 'eventstore.topics_changed()', false, '{}'),
    ('eventstore', 'eventstore.unprotect_as(eventstore.event,oid)', false, '{}'),
    ('eventstore', 'eventstore.unreadable_topic(oid,text[])', false, '{}'),
    ('eventstore', 'eventstore.window_snapshot()', false, '{}'),
    -- birdwatch (BIRDWATCH.md "Services, roles and what each may do")
    ('birdwatch', 'birdwatch.admin_overview()', false, '{birdwatch_admin_api}'),
    ('birdwatch', 'birdwatch.as_grade(jsonb)', false, '{birdwatch_notifier,birdwatch_score_model,birdwatch_statistics,birdwatch_user_api}'),
    ('birdwatch', 'birdwatch.as_image_url(jsonb)', false, '{birdwatch_notifier,birdwatch_score_model,birdwatch_statistics,birdwatch_user_api}'),
    ('birdwatch', 'birdwatch.as_uuid(jsonb)', false, '{birdwatch_notifier,birdwatch_score_model,birdwatch_statistics,birdwatch_user_api}'),
    ('birdwatch', 'birdwatch.audit(text,text,jsonb)', false, '{birdwatch_audit}'),
    ('birdwatch', 'birdwatch.authenticate(text,text,boolean)', true, '{birdwatch_auth_api,birdwatch_tick_api}'),
    ('birdwatch', 'birdwatch.check_display_name(text)', false, '{birdwatch_user_api}'),
    ('birdwatch', 'birdwatch.check_email(text)', false, '{birdwatch_user_api}'),
    ('birdwatch', 'birdwatch.check_image_url(text)', false, '{birdwatch_tick_api}'),
    ('birdwatch', 'birdwatch.claim_emails(integer)', true, '{birdwatch_notifier}'),
    ('birdwatch', 'birdwatch.count_event(eventstore.event)', false, '{birdwatch_statistics}'),
    ('birdwatch', 'birdwatch.daily(date,date)', true, '{birdwatch_admin_api,birdwatch_statistics}'),
    ('birdwatch', 'birdwatch.delete_user(uuid)', true, '{birdwatch_admin_api,birdwatch_audit}'),
    ('birdwatch', 'birdwatch.email_address(uuid)', true, '{birdwatch_audit,birdwatch_notifier,birdwatch_user_api}'),
    ('birdwatch', 'birdwatch.email_failed(uuid,text)', true, '{birdwatch_notifier}'),
    ('birdwatch', 'birdwatch.email_retry_delay(integer)', false, '{birdwatch_notifier}'),
    ('birdwatch', 'birdwatch.email_sent(uuid)', true, '{birdwatch_notifier}'),
    ('birdwatch', 'birdwatch.envelope(uuid,text,text,jsonb,text)', false, '{birdwatch_audit,birdwatch_auth_api,birdwatch_notifier,birdwatch_score_model,birdwatch_tick_api}'),
    ('birdwatch', 'birdwatch.export_user_data(uuid)', true, '{birdwatch_admin_api,birdwatch_user_api}'),
    ('birdwatch', 'birdwatch.forget_me(text)', true, '{birdwatch_app,birdwatch_tick_api}'),
    ('birdwatch', 'birdwatch.forget_user(eventstore.event)', false, '{birdwatch_user_api}'),
    ('birdwatch', 'birdwatch.list_users(integer,integer)', true, '{birdwatch_admin_api,birdwatch_user_api}'),
    ('birdwatch', 'birdwatch.login(text,text)', true, '{birdwatch_app,birdwatch_auth_api}'),
    ('birdwatch', 'birdwatch.notify_rating(eventstore.event)', false, '{birdwatch_notifier}'),
    ('birdwatch', 'birdwatch.overview()', true, '{birdwatch_admin_api,birdwatch_statistics}'),
    ('birdwatch', 'birdwatch.purge_notifier(timestamp with time zone,integer)', true, '{birdwatch_notifier}'),
    ('birdwatch', 'birdwatch.rate(text,text,integer)', true, '{birdwatch_app,birdwatch_tick_api}'),
    ('birdwatch', 'birdwatch.register_user(text,text)', true, '{birdwatch_app,birdwatch_user_api}'),
    ('birdwatch', 'birdwatch.replace_score_secret()', false, '{}'),
    ('birdwatch', 'birdwatch.request_erasure(uuid)', true, '{birdwatch_audit,birdwatch_tick_api}'),
    ('birdwatch', 'birdwatch.resolve_token(text)', true, '{birdwatch_auth_api,birdwatch_user_api}'),
    ('birdwatch', 'birdwatch.rfc3339_now()', false, '{birdwatch_audit,birdwatch_auth_api,birdwatch_notifier,birdwatch_score_model,birdwatch_tick_api}'),
    ('birdwatch', 'birdwatch.score_image(text)', false, '{birdwatch_score_model}'),
    ('birdwatch', 'birdwatch.score_tick(eventstore.event)', false, '{birdwatch_score_model}'),
    ('birdwatch', 'birdwatch.set_score_secret(text)', true, '{birdwatch_admin_api,birdwatch_audit}'),
    ('birdwatch', 'birdwatch.tick(text,text)', true, '{birdwatch_app,birdwatch_tick_api}'),
    ('birdwatch', 'birdwatch.token_hash(text)', false, '{birdwatch_user_api}'),
    ('birdwatch', 'birdwatch.upcast_rate_1_to_2(jsonb)', true, '{birdwatch_tick_api}'),
    ('birdwatch', 'birdwatch.user_count()', true, '{birdwatch_admin_api,birdwatch_user_api}'),
    ('birdwatch', 'birdwatch.user_events(uuid)', true, '{birdwatch_export,birdwatch_user_api}');

-- The actual table, from the catalogue.
CREATE TEMP TABLE pa_actual AS
SELECT x.extname::text AS ext,
       p.oid::regprocedure::text AS fn,
       p.prosecdef AS secdef,
       coalesce((SELECT array_agg(r.role ORDER BY r.role COLLATE "C")
                   FROM pa_roles r
                  WHERE has_function_privilege(CASE r.role WHEN 'PUBLIC' THEN 'public' ELSE r.role END,
                                               p.oid, 'EXECUTE')),
                '{}') AS execute,
       p.oid
  FROM pg_depend d
  JOIN pg_extension x ON x.oid = d.refobjid
  JOIN pg_proc p ON p.oid = d.objid
 WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass
   AND d.deptype = 'e' AND x.extname IN ('eventstore', 'birdwatch');

SELECT plan(160 + (SELECT count(*)::integer FROM pa_expected));

SELECT is_empty(
    $$SELECT a.ext || ': ' || a.fn FROM pa_actual a
       WHERE NOT EXISTS (SELECT FROM pa_expected e WHERE e.fn = a.fn) ORDER BY 1$$,
    'every function of eventstore and birdwatch has a row in the expected table (those listed have none)'
);
SELECT is_empty(
    $$SELECT e.ext || ': ' || e.fn FROM pa_expected e
       WHERE NOT EXISTS (SELECT FROM pa_actual a WHERE a.fn = e.fn AND a.ext = e.ext) ORDER BY 1$$,
    'every row of the expected table is a function of its extension (those listed are not)'
);
SELECT is(
    (SELECT format('%s, executed by %s', CASE WHEN a.secdef THEN 'SECURITY DEFINER' ELSE 'SECURITY INVOKER' END,
                   coalesce(nullif(array_to_string(a.execute, ', '), ''), 'nobody but its owner'))
       FROM pa_actual a WHERE a.fn = e.fn),
    format('%s, executed by %s', CASE WHEN e.secdef THEN 'SECURITY DEFINER' ELSE 'SECURITY INVOKER' END,
           coalesce(nullif(array_to_string(e.execute, ', '), ''), 'nobody but its owner')),
    format('%s: %s, executed by %s', e.fn, CASE WHEN e.secdef THEN 'SECURITY DEFINER' ELSE 'SECURITY INVOKER' END,
           coalesce(nullif(array_to_string(e.execute, ', '), ''), 'nobody but its owner'))
)
  FROM pa_expected e
 ORDER BY e.ext DESC, e.fn COLLATE "C";

SELECT is_empty(
    $$SELECT a.fn || ' grants EXECUTE to ' || CASE g.grantee WHEN 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END
        FROM pa_actual a
        JOIN pg_proc p ON p.oid = a.oid
       CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) g
       WHERE g.grantee <> p.proowner
         AND (g.grantee = 0 OR g.grantee::regrole::text NOT IN (SELECT role FROM pa_roles))
       ORDER BY 1$$,
    'no function ACL names PUBLIC or a role outside the eventstore_* and birdwatch_* roles and pg_monitor'
);
SELECT is_empty(
    $$SELECT a.fn || ' is owned by ' || p.proowner::regrole::text
        FROM pa_actual a JOIN pg_proc p ON p.oid = a.oid
       WHERE p.proowner NOT IN (SELECT extowner FROM pg_extension WHERE extname IN ('eventstore', 'birdwatch'))
         AND p.proowner::regrole::text !~ '^birdwatch_'
       ORDER BY 1$$,
    'every function belongs to the extension''s owner or to a birdwatch service role'
);

------------------------------------------------------------------------------
-- 2. search_path and who the code runs as
------------------------------------------------------------------------------

-- Every schema named in a pinned search_path, with whether a role that is
-- not a superuser may create objects in it.
CREATE TEMP VIEW pa_search_paths AS
SELECT a.fn, a.secdef, l.lanname, s.setting,
       string_to_array(replace(substr(s.setting, length('search_path=') + 1), ' ', ''), ',') AS path
  FROM pa_actual a
  JOIN pg_proc p ON p.oid = a.oid
  JOIN pg_language l ON l.oid = p.prolang
  LEFT JOIN LATERAL (SELECT c AS setting FROM unnest(p.proconfig) c
                      WHERE c LIKE 'search\_path=%') s ON true;

SELECT is_empty(
    $$SELECT fn FROM pa_search_paths WHERE secdef AND setting IS NULL ORDER BY 1$$,
    'every SECURITY DEFINER function sets its search_path'
);
SELECT is_empty(
    $$SELECT fn || ' (' || lanname || ')' FROM pa_search_paths
       WHERE lanname NOT IN ('c', 'internal') AND setting IS NULL ORDER BY 1$$,
    'every SQL and PL/pgSQL function sets its search_path (C entry points run them as the extension''s owner)'
);
SELECT is_empty(
    $$SELECT fn || ': ' || setting FROM pa_search_paths
       WHERE setting IS NOT NULL AND path[cardinality(path)] <> 'pg_temp'
       ORDER BY 1$$,
    'every pinned search_path ends with pg_temp, so that temporary objects never come before the catalog'
);
SELECT is_empty(
    $$SELECT DISTINCT fn || ': ' || setting FROM pa_search_paths, unnest(path) AS s
       WHERE setting IS NOT NULL
         AND (s IN ('public', '$user', '"$user"', '') OR s NOT IN ('pg_catalog', 'pg_temp', 'eventstore', 'birdwatch'))
       ORDER BY 1$$,
    'no pinned search_path names public, $user or any schema but pg_catalog, eventstore, birdwatch and pg_temp'
);
SELECT is(
    (SELECT array_agg(DISTINCT setting ORDER BY setting) FROM pa_search_paths WHERE setting IS NOT NULL),
    ARRAY['search_path=pg_catalog, pg_temp'],
    'every pinned search_path is exactly pg_catalog, pg_temp (the extensions qualify their own objects)'
);
SELECT is_empty(
    $$SELECT r.rolname || ' may create in ' || n.nspname
        FROM pg_namespace n CROSS JOIN pg_roles r
       WHERE n.nspname IN ('pg_catalog', 'eventstore', 'birdwatch')
         AND NOT r.rolsuper AND has_schema_privilege(r.oid, n.oid, 'CREATE')
       ORDER BY 1$$,
    'no role but superusers may create objects in pg_catalog, eventstore or birdwatch'
);
SELECT is_empty(
    $$SELECT format('consumer %s runs as %s, its handler %s belongs to %s', c.name, c.run_as,
                    c.handler, p.proowner::regrole)
        FROM eventstore.consumers c JOIN pg_proc p ON p.oid = c.handler::regprocedure
       WHERE c.name LIKE 'birdwatch\_%' AND p.proowner <> c.run_as::oid
       ORDER BY 1$$,
    'the handler of every birdwatch consumer belongs to the role it runs as'
);
-- An owner may ALTER its function (SECURITY INVOKER, SET search_path):
-- whatever runs it may have no more privileges than the owner.
SELECT is_empty(
    $$SELECT format('upcaster %s of topic %s runs as %s, but belongs to %s', u.fn, u.topic, u.run_as,
                    p.proowner::regrole)
        FROM eventstore.upcasters u JOIN pg_proc p ON p.oid = u.fn::regprocedure
       WHERE u.fn LIKE 'birdwatch.%' AND p.proowner <> u.run_as::oid
       ORDER BY 1$$,
    'the function of every birdwatch upcaster belongs to the role it runs as (its registrar)'
);
SELECT is_empty(
    $$SELECT 'consumer ' || c.name || ' runs as superuser ' || c.run_as
        FROM eventstore.consumers c JOIN pg_roles r ON r.oid = c.run_as
       WHERE c.name LIKE 'birdwatch\_%' AND r.rolsuper
      UNION ALL
      SELECT 'upcaster ' || u.fn || ' runs as superuser ' || u.run_as
        FROM eventstore.upcasters u JOIN pg_roles r ON r.oid = u.run_as
       WHERE u.fn LIKE 'birdwatch.%' AND r.rolsuper$$,
    'no birdwatch consumer or upcaster runs as a superuser'
);

------------------------------------------------------------------------------
-- 3. Shadowing: functions, operators and tables planted by a caller
------------------------------------------------------------------------------

-- Fixtures, as the superuser: a user with a token, a ticked image, an old
-- rate 1.0 event (for the upcaster), a handler and an upcaster of pa_es.
CREATE TABLE public.pa_handled (id uuid);
GRANT INSERT ON public.pa_handled TO PUBLIC;
DO $$
DECLARE
    u record;
BEGIN
    SELECT * INTO u FROM birdwatch.register_user('pa.audit@example.com', 'Privilege Audit');
    PERFORM set_config('pa.user_id', u.user_id::text, true);
    PERFORM set_config('pa.token', u.token, true);
    INSERT INTO birdwatch.ticks (image_url, owner, event_id)
    VALUES ('https://birds.example/pa-audit-old.jpg', u.user_id, gen_random_uuid());
    PERFORM eventstore.append('rate', '{"id": "7d1c0a52-0000-4000-8000-00000000aa01", "type": "update", "version": "1.0",
        "data": {"user": {"id": "7d1c0a52-0000-4000-8000-00000000ab01"}, "image_url": "https://birds.example/pa-audit-old.jpg",
                 "rating": 3},
        "metadata": {"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}}');
END
$$;
SET LOCAL ROLE pa_es;
CREATE FUNCTION public.pa_handler(e eventstore.event) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$ BEGIN INSERT INTO public.pa_handled VALUES (e.id); END $$;
CREATE FUNCTION public.pa_upcaster(envelope jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT envelope $$;
RESET ROLE;

-- The shadows: in public (by pa_es, which may create there) and in
-- pg_temp, every one raising PA001 "shadow <name> executed".  Exact
-- duplicates of pg_catalog's, and better matches than pg_catalog's
-- (jsonb_build_object(text, text) beats the variadic one, convert_to(text,
-- text) wins for an unknown literal, jsonb_set with 3 arguments, =
-- (regrole, regrole)).  Not gen_random_uuid(): pgcrypto, in public here,
-- has one already.
CREATE TEMP TABLE pa_shadow (name text, args text, returns text);
INSERT INTO pa_shadow VALUES
    ('now', '', 'timestamptz'), ('clock_timestamp', '', 'timestamptz'),
    ('lower', 'text', 'text'), ('length', 'text', 'integer'),
    ('btrim', 'text', 'text'), ('left', 'text, integer', 'text'), ('replace', 'text, text, text', 'text'),
    ('starts_with', 'text, text', 'boolean'), ('split_part', 'text, text, integer', 'text'),
    ('regexp_match', 'text, text', 'text[]'), ('string_to_array', 'text, text', 'text[]'),
    ('quote_literal', 'text', 'text'), ('sha256', 'bytea', 'bytea'), ('encode', 'bytea, text', 'text'),
    ('decode', 'text, text', 'bytea'), ('convert_to', 'text, text', 'bytea'),
    ('convert_from', 'bytea, text', 'text'), ('translate', 'text, text, text', 'text'),
    ('to_char', 'timestamp, text', 'text'), ('substr', 'text, integer, integer', 'text'),
    ('jsonb_build_object', 'text, text', 'jsonb'), ('jsonb_build_object', 'text, uuid', 'jsonb'),
    ('jsonb_build_object', 'text, jsonb', 'jsonb'), ('jsonb_build_array', 'jsonb', 'jsonb'),
    ('jsonb_set', 'jsonb, text[], jsonb', 'jsonb'), ('jsonb_typeof', 'jsonb', 'text'),
    ('to_jsonb', 'text[]', 'jsonb'), ('array_append', 'text[], text', 'text[]'),
    ('array_position', 'text[], text', 'integer'), ('cardinality', 'text[]', 'integer'),
    ('unnest', 'text[]', 'SETOF text'), ('pg_has_role', 'oid, text, text', 'boolean'),
    ('has_function_privilege', 'oid, oid, text', 'boolean'), ('pg_notify', 'text, text', 'void'),
    ('current_setting', 'text, boolean', 'text'), ('pg_current_snapshot', '', 'pg_snapshot'),
    ('pg_visible_in_snapshot', 'xid8, pg_snapshot', 'boolean'),
    -- what members use: the hash of member_of, the members of start_members
    ('hashtextextended', 'text, bigint', 'bigint'), ('generate_series', 'integer, integer', 'SETOF integer'),
    ('pg_snapshot_xmin', 'pg_snapshot', 'xid8'),
    -- operators: name, "left, right", result
    ('=', 'text, text', 'boolean'), ('=', 'uuid, uuid', 'boolean'), ('=', 'jsonb, jsonb', 'boolean'),
    ('=', 'bigint, bigint', 'boolean'), ('=', 'integer, integer', 'boolean'), ('=', 'name, name', 'boolean'),
    ('=', 'oid, oid', 'boolean'), ('=', 'regrole, regrole', 'boolean'), ('=', 'bytea, bytea', 'boolean'),
    ('<>', 'text, text', 'boolean'), ('<', 'bigint, bigint', 'boolean'), ('>', 'bigint, bigint', 'boolean'),
    ('>=', 'xid8, xid8', 'boolean'), ('||', 'text, text', 'text'), ('||', 'jsonb, jsonb', 'jsonb'),
    ('->', 'jsonb, text', 'jsonb'), ('#>', 'jsonb, text[]', 'jsonb'), ('#>>', 'jsonb, text[]', 'text'),
    ('~', 'text, text', 'boolean'), ('!~', 'text, text', 'boolean'), ('~*', 'text, text', 'boolean'),
    ('&', 'bigint, bigint', 'bigint'), ('%', 'bigint, bigint', 'bigint');
GRANT SELECT ON pa_shadow TO pa_es;

SET LOCAL ROLE pa_es;
DO $$
DECLARE
    s   record;
    nsp text;
    n   integer := 0;
    fn  text;
BEGIN
    FOREACH nsp IN ARRAY ARRAY['public', 'pg_temp'] LOOP
        FOR s IN SELECT * FROM pa_shadow LOOP
            n := n + 1;
            fn := CASE WHEN s.name ~ '^[a-z_][a-z0-9_]*$' THEN s.name ELSE 'pa_shadow_op_' || n END;
            EXECUTE format('CREATE FUNCTION %s.%I(%s) RETURNS %s LANGUAGE plpgsql AS %L',
                           nsp, fn, s.args, s.returns,
                           format('BEGIN RAISE EXCEPTION %L USING ERRCODE = %L; END',
                                  -- (RAISE takes % for a parameter: the operator % is %%)
                                  replace(format('shadow %s.%s(%s) executed', nsp, s.name, s.args), '%', '%%'),
                                  'PA001'));
            IF fn <> s.name THEN
                EXECUTE format('CREATE OPERATOR %s.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %s.%I)',
                               nsp, s.name, split_part(s.args, ', ', 1), split_part(s.args, ', ', 2), nsp, fn);
            END IF;
        END LOOP;
    END LOOP;
END
$$;
RESET ROLE;
-- Tables in pg_temp named like the extensions' tables, which come first
-- for an unqualified name under the caller's search_path (the session's
-- temporary schema is the same whichever role creates them; these copy
-- the real tables' columns, so the superuser creates them).
CREATE TEMP TABLE events (LIKE eventstore.events);
CREATE TEMP TABLE topics (LIKE eventstore.topics);
CREATE TEMP TABLE streams (LIKE eventstore.streams);
CREATE TEMP TABLE stream_heads (LIKE eventstore.stream_heads);
CREATE TEMP TABLE snapshots (LIKE eventstore.snapshots);
CREATE TEMP TABLE erased_streams (LIKE eventstore.erased_streams);
CREATE TEMP TABLE stream_name_key (only_row boolean, key bytea);
CREATE TEMP TABLE consumers (LIKE eventstore.consumers);
CREATE TEMP TABLE members (LIKE eventstore.members);
CREATE TEMP TABLE parked (LIKE eventstore.parked);
CREATE TEMP TABLE upcasters (LIKE eventstore.upcasters);
CREATE TEMP TABLE protections (LIKE eventstore.protections);
CREATE TEMP TABLE subject_keys (subject text, key_id bigint, key bytea, created_at timestamptz);
CREATE TEMP TABLE users (id uuid, email text, display_name text, created_at timestamptz);
CREATE TEMP TABLE tokens (hash bytea, user_id uuid, created_at timestamptz);
CREATE TEMP TABLE ticks (image_url text, owner uuid, event_id uuid, ticked_at timestamptz);
CREATE TEMP TABLE outbox (LIKE birdwatch.outbox);
CREATE TEMP TABLE score_secret (only_row boolean, secret text, changed_at timestamptz);
GRANT ALL ON pg_temp.events, pg_temp.topics, pg_temp.streams, pg_temp.stream_heads, pg_temp.snapshots,
             pg_temp.erased_streams, pg_temp.stream_name_key,
             pg_temp.consumers, pg_temp.members, pg_temp.parked,
             pg_temp.upcasters, pg_temp.protections, pg_temp.subject_keys, pg_temp.users,
             pg_temp.tokens, pg_temp.ticks, pg_temp.outbox, pg_temp.score_secret TO PUBLIC;

SELECT is(
    (SELECT count(*)::integer FROM pg_proc p WHERE p.proname !~ '^pa_(handler|upcaster)$'
        AND p.pronamespace IN ('public'::regnamespace, pg_my_temp_schema())
        AND p.proowner = 'pa_es'::regrole),
    2 * (SELECT count(*)::integer FROM pa_shadow),
    'pa_es, a caller of the API, could plant every shadow in public and in pg_temp'
);

-- Runs q as role r with search_path public, pg_catalog (pg_temp first for
-- tables and types, as by default); 'ok' or the error, then back to the
-- superuser and the test's search_path.  Only qualified names here.
CREATE FUNCTION pg_temp.pa_attack(r text, q text) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
    saved  text := pg_catalog.current_setting('search_path');
    result text := 'ok';
BEGIN
    BEGIN
        PERFORM pg_catalog.set_config('role', r, true);
        PERFORM pg_catalog.set_config('search_path', 'public, pg_catalog', true);
        EXECUTE q;
        PERFORM pg_catalog.set_config('role', 'none', true);
    EXCEPTION WHEN others THEN
        result := pg_catalog.format('%s: %s', SQLSTATE, SQLERRM);
    END;
    PERFORM pg_catalog.set_config('search_path', saved, true);
    RETURN result;
END
$f$;

CREATE TEMP TABLE pa_calls (n serial, role text, label text, q text, expect text DEFAULT 'ok');
INSERT INTO pa_calls (role, label, q, expect) VALUES
    ('pa_es', 'create_topic', $$SELECT eventstore.create_topic('pa_audit', '1.0')$$, 'ok'),
    ('pa_es', 'create_topic of a protected topic', $$SELECT eventstore.create_topic('pa_audit_personal')$$, 'ok'),
    ('pa_es', 'create_topic of an existing topic (42710)', $$SELECT eventstore.create_topic('pa_audit')$$, '42710'),
    ('pa_es', 'validate', $$SELECT eventstore.validate('{"id": "7d1c0a52-0000-4000-8000-000000000001", "type": "new", "version": "1.0", "data": {}, "metadata": {"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}}'::jsonb)$$, 'ok'),
    ('pa_es', 'is_valid', $$SELECT eventstore.is_valid('{"id": 1}'::jsonb)$$, 'ok'),
    ('pa_es', 'derived_id', $$SELECT eventstore.derived_id('7d1c0a52-0000-4000-8000-000000000001'::uuid, 'pa')$$, 'ok'),
    ('pa_es', 'append', $$SELECT eventstore.append('pa_audit', '{"id": "7d1c0a52-0000-4000-8000-000000000001", "type": "new", "version": "1.0", "data": {"n": 1}, "metadata": {"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}}'::jsonb)$$, 'ok'),
    ('pa_es', 'append of a duplicate', $$SELECT eventstore.append('pa_audit', '{"id": "7d1c0a52-0000-4000-8000-000000000001", "type": "new", "version": "1.0", "data": {"n": 1}, "metadata": {"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}}'::jsonb)$$, 'ok'),
    ('pa_es', 'append to a stream with expected_version', $$SELECT eventstore.append('pa_audit', '{"id": "7d1c0a52-0000-4000-8000-000000000002", "type": "new", "version": "1.0", "data": {"n": 2}, "metadata": {"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}}'::jsonb, 'pa-stream', 0)$$, 'ok'),
    ('pa_es', 'append_batch to a stream', $$SELECT eventstore.append_batch('pa_audit', ARRAY['{"id": "7d1c0a52-0000-4000-8000-000000000003", "type": "new", "version": "1.0", "data": {"n": 3}, "metadata": {"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}}', '{"id": "7d1c0a52-0000-4000-8000-000000000004", "type": "new", "version": "1.0", "data": {"n": 4}, "metadata": {"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}}']::jsonb[], 'pa-stream', 1)$$, 'ok'),
    ('pa_es', 'append with a wrong expected_version (40001)', $$SELECT eventstore.append('pa_audit', '{"id": "7d1c0a52-0000-4000-8000-000000000005", "type": "new", "version": "1.0", "data": {}, "metadata": {"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}}'::jsonb, 'pa-stream', 7)$$, '40001'),
    ('pa_es', 'read', $$SELECT * FROM eventstore.read('pa_audit')$$, 'ok'),
    ('pa_es', 'read of every topic', $$SELECT * FROM eventstore.read(NULL, 0, 10)$$, 'ok'),
    ('pa_es', 'read_stream', $$SELECT * FROM eventstore.read_stream('pa_audit', 'pa-stream')$$, 'ok'),
    ('pa_es', 'get', $$SELECT * FROM eventstore.get('7d1c0a52-0000-4000-8000-000000000001'::uuid)$$, 'ok'),
    ('pa_es', 'read_stream backward', $$SELECT * FROM eventstore.read_stream('pa_audit', 'pa-stream', backward => true)$$, 'ok'),
    ('pa_es', 'safe_position', $$SELECT eventstore.safe_position()$$, 'ok'),
    ('pa_es', 'read_correlated', $$SELECT * FROM eventstore.read_correlated('7d1c0a52-0000-4000-8000-000000000001'::uuid)$$, 'ok'),
    ('pa_es', 'stream_version', $$SELECT eventstore.stream_version('pa_audit', 'pa-stream')$$, 'ok'),
    ('pa_es', 'last_event', $$SELECT eventstore.last_event('pa_audit', 'pa-stream')$$, 'ok'),
    ('pa_es', 'the view streams', $$SELECT * FROM eventstore.streams$$, 'ok'),
    ('pa_es', 'save_snapshot', $$SELECT eventstore.save_snapshot('pa_audit', 'pa-stream', 2, '{"n": 2}')$$, 'ok'),
    ('pa_es', 'save_snapshot of a version the stream lacks (22023)', $$SELECT eventstore.save_snapshot('pa_audit', 'pa-stream', 9, '{}')$$, '22023'),
    ('pa_es', 'load_snapshot', $$SELECT * FROM eventstore.load_snapshot('pa_audit', 'pa-stream')$$, 'ok'),
    ('pa_es', 'close_stream', $$SELECT eventstore.close_stream('pa_audit', 'pa-closed')$$, 'ok'),
    ('pa_es', 'append to a closed stream (55000)', $$SELECT eventstore.append('pa_audit', '{"id": "7d1c0a52-0000-4000-8000-000000000006", "type": "new", "version": "1.0", "data": {}, "metadata": {"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}}'::jsonb, 'pa-closed')$$, '55000'),
    ('pa_es', 'upcast through birdwatch''s upcaster', $$SELECT eventstore.upcast(e) FROM eventstore.get('7d1c0a52-0000-4000-8000-00000000aa01'::uuid) AS e$$, 'ok'),
    ('pa_es', 'protect_fields', $$SELECT eventstore.protect_fields('pa_audit_personal', 'user.id', ARRAY['email'])$$, 'ok'),
    ('pa_es', 'append to a protected topic (encryption)', $$SELECT eventstore.append('pa_audit_personal', '{"id": "7d1c0a52-0000-4000-8000-000000000011", "type": "new", "version": "1.0", "data": {"user": {"id": "pa-subject"}, "email": "someone@example.com"}, "metadata": {"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}}'::jsonb)$$, 'ok'),
    ('pa_es', 'unprotect (decryption)', $$SELECT eventstore.unprotect(e) FROM eventstore.get('7d1c0a52-0000-4000-8000-000000000011'::uuid) AS e$$, 'ok'),
    ('pa_es', 'forget_subject', $$SELECT eventstore.forget_subject('pa-subject')$$, 'ok'),
    ('pa_es', 'grant_topic', $$SELECT eventstore.grant_topic('pa_audit', 'read', 'pa_bw')$$, 'ok'),
    ('pa_es', 'revoke_topic', $$SELECT eventstore.revoke_topic('pa_audit', 'read', 'pa_bw')$$, 'ok'),
    ('pa_es', 'set_topic_version', $$SELECT eventstore.set_topic_version('pa_audit', '1.1')$$, 'ok'),
    ('pa_es', 'set_retention', $$SELECT eventstore.set_retention('pa_audit', '1 day')$$, 'ok'),
    ('pa_es', 'purge_expired', $$SELECT eventstore.purge_expired()$$, 'ok'),
    ('pa_es', 'publish_archive', $$SELECT eventstore.publish_archive()$$, 'ok'),
    ('pa_es', 'create_upcaster', $$SELECT eventstore.create_upcaster('pa_audit', 0, 1, 'public.pa_upcaster(jsonb)')$$, 'ok'),
    ('pa_es', 'create_consumer (outside)', $$SELECT eventstore.create_consumer('pa_audit_outside', ARRAY['pa_audit'])$$, 'ok'),
    ('pa_es', 'create_consumer (in-database)', $$SELECT eventstore.create_consumer('pa_audit_indb', ARRAY['pa_audit'], 'public.pa_handler(eventstore.event)')$$, 'ok'),
    ('pa_es', 'poll', $$SELECT * FROM eventstore.poll('pa_audit_outside')$$, 'ok'),
    ('pa_es', 'poll of a member', $$SELECT * FROM eventstore.poll('pa_audit_outside', 100, 0)$$, 'ok'),
    ('pa_es', 'create_consumer of 3 members (outside)', $$SELECT eventstore.create_consumer('pa_audit_members', ARRAY['pa_audit'], members => 3)$$, 'ok'),
    ('pa_es', 'create_consumer of 2 members (in-database)', $$SELECT eventstore.create_consumer('pa_audit_indb_members', ARRAY['pa_audit'], 'public.pa_handler(eventstore.event)', members => 2)$$, 'ok'),
    ('pa_es', 'poll of any member of 3', $$SELECT * FROM eventstore.poll('pa_audit_members')$$, 'ok'),
    ('pa_es', 'poll of member 2 of 3', $$SELECT * FROM eventstore.poll('pa_audit_members', 100, 2)$$, 'ok'),
    ('pa_es', 'set_consumer_members', $$SELECT eventstore.set_consumer_members('pa_audit_members', 2)$$, 'ok'),
    ('pa_es', 'poll while members change', $$SELECT * FROM eventstore.poll('pa_audit_members')$$, 'ok'),
    ('pa_es', 'set_consumer_members again while members change', $$SELECT eventstore.set_consumer_members('pa_audit_members', 4)$$, 'ok'),
    ('pa_es', 'set_consumer_members with 0 members (22023)', $$SELECT eventstore.set_consumer_members('pa_audit_members', 0)$$, '22023'),
    ('pa_es', 'run_consumer of a consumer of 2 members', $$SELECT eventstore.run_consumer('pa_audit_indb_members')$$, 'ok'),
    ('pa_es', 'undelivered of a consumer whose members change', $$SELECT * FROM eventstore.undelivered('pa_audit_members')$$, 'ok'),
    ('pa_es', 'consumer_members', $$SELECT * FROM eventstore.consumer_members$$, 'ok'),
    ('pa_es', 'ack of a batch never delivered (22023: nothing committed is pending)', $$SELECT eventstore.ack('pa_audit_outside', 1)$$, '22023'),
    ('pa_es', 'nack of a batch never delivered (22023)', $$SELECT eventstore.nack('pa_audit_outside', 99, 'x')$$, '22023'),
    ('pa_es', 'run_consumer', $$SELECT eventstore.run_consumer('pa_audit_indb')$$, 'ok'),
    ('pa_es', 'replay_parked of an event not parked (42704)', $$SELECT eventstore.replay_parked('pa_audit_indb', '7d1c0a52-0000-4000-8000-000000000001'::uuid)$$, '42704'),
    ('pa_es', 'consumer_status', $$SELECT * FROM eventstore.consumer_status$$, 'ok'),
    ('pa_es', 'reset_consumer', $$SELECT eventstore.reset_consumer('pa_audit_outside', 0)$$, 'ok'),
    ('pa_es', 'drop_consumer', $$SELECT eventstore.drop_consumer('pa_audit_outside')$$, 'ok'),
    ('pa_es', 'truncate_stream', $$SELECT eventstore.truncate_stream('pa_audit', 'pa-stream', 2)$$, 'ok'),
    ('pa_es', 'set_stream_max_count', $$SELECT eventstore.set_stream_max_count('pa_audit', 'pa-stream', 1)$$, 'ok'),
    ('pa_es', 'erase_stream', $$SELECT eventstore.erase_stream('pa_audit', 'pa-stream')$$, 'ok'),
    ('pa_bw', 'register_user', $$SELECT * FROM birdwatch.register_user('pa.shadow@example.com', 'Shadow Test')$$, 'ok'),
    ('pa_bw', 'login with a user agent', $$SELECT birdwatch.login('bw_pa_audit_token_1', 'Mozilla/5.0')$$, 'ok'),
    ('pa_bw', 'tick', $$SELECT birdwatch.tick('bw_pa_audit_token_1', 'https://birds.example/pa-audit-1.jpg')$$, 'ok'),
    ('pa_bw', 'tick again (a retry)', $$SELECT birdwatch.tick('bw_pa_audit_token_1', 'https://birds.example/pa-audit-1.jpg')$$, 'ok'),
    ('pa_bw', 'rate', $$SELECT birdwatch.rate('bw_pa_audit_token_2', 'https://birds.example/pa-audit-1.jpg', 4)$$, 'ok'),
    ('pa_bw', 'forget_me', $$SELECT birdwatch.forget_me('bw_pa_audit_token_3')$$, 'ok'),
    ('pa_bw', 'score_tick (the ScoreModel handler)', $$SELECT birdwatch.score_tick(ROW(1, '7d1c0a52-0000-4000-8000-00000000aa05', 'tick', NULL, NULL, '{"id": "7d1c0a52-0000-4000-8000-00000000aa05", "type": "new", "version": "1.0", "data": {"user": {"id": "7d1c0a52-0000-4000-8000-00000000ab05"}, "image": {"url": "https://birds.example/pa-audit-3.jpg"}}, "metadata": {"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}}', '2026-03-01 10:00:00+00')::eventstore.event)$$, 'ok'),
    ('pa_bw', 'notify_rating (the Notifier handler)', $$SELECT birdwatch.notify_rating(ROW(1, '7d1c0a52-0000-4000-8000-00000000aa02', 'rate', NULL, NULL, '{"id": "7d1c0a52-0000-4000-8000-00000000aa02", "type": "update", "version": "2.0", "data": {"user": {"id": "7d1c0a52-0000-4000-8000-00000000ab02"}, "image": {"url": "https://birds.example/pa-audit-old.jpg", "owner": "%USER%"}, "rating": 5}, "metadata": {"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}}', '2026-03-01 10:00:00+00')::eventstore.event)$$, 'ok'),
    ('pa_bw', 'count_event (the Statistics handler)', $$SELECT birdwatch.count_event(ROW(1, '7d1c0a52-0000-4000-8000-00000000aa03', 'tick', NULL, NULL, '{"id": "7d1c0a52-0000-4000-8000-00000000aa03", "type": "new", "version": "1.0", "data": {"user": {"id": "7d1c0a52-0000-4000-8000-00000000ab03"}, "image": {"url": "https://birds.example/pa-audit-2.jpg"}}, "metadata": {"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}}', '2026-03-01 10:00:00+00')::eventstore.event)$$, 'ok'),
    ('pa_bw', 'claim_emails', $$SELECT * FROM birdwatch.claim_emails(10)$$, 'ok'),
    ('pa_bw', 'email_failed', $$SELECT birdwatch.email_failed('7d1c0a52-0000-4000-8000-00000000aa09', 'x')$$, 'ok'),
    ('pa_bw', 'email_sent', $$SELECT birdwatch.email_sent('7d1c0a52-0000-4000-8000-00000000aa09')$$, 'ok'),
    ('pa_bw', 'admin_overview', $$SELECT birdwatch.admin_overview()$$, 'ok'),
    ('pa_bw', 'list_users', $$SELECT * FROM birdwatch.list_users(10, 0)$$, 'ok'),
    ('pa_bw', 'daily', $$SELECT * FROM birdwatch.daily('2026-03-01', '2026-03-02')$$, 'ok'),
    ('pa_bw', 'export_user_data', $$SELECT birdwatch.export_user_data('%USER%'::uuid)$$, 'ok'),
    ('pa_bw', 'set_score_secret', $$SELECT birdwatch.set_score_secret('a secret of the privilege audit')$$, 'ok'),
    ('pa_bw', 'delete_user', $$SELECT birdwatch.delete_user('%USER%'::uuid)$$, 'ok'),
    ('pa_bw', 'forget_user (the UserAPI gdpr handler)', $$SELECT birdwatch.forget_user(ROW(1, '7d1c0a52-0000-4000-8000-00000000aa04', 'gdpr', NULL, NULL, '{"id": "7d1c0a52-0000-4000-8000-00000000aa04", "type": "delete", "version": "1.0", "data": {"user": {"id": "%USER%"}}, "metadata": {"source": "services/TickAPI", "time": "2026-03-01T10:00:00Z"}}', '2026-03-01 10:00:00+00')::eventstore.event)$$, 'ok'),
    ('pa_bw', 'run_consumer of the birdwatch consumers', $$SELECT eventstore.run_consumer(c, 100) FROM pg_catalog.unnest(ARRAY['birdwatch_score_model', 'birdwatch_notifier', 'birdwatch_statistics', 'birdwatch_user_gdpr']) AS c$$, 'ok');

SET LOCAL client_min_messages = error;    -- publish_archive warns about wal_level
SELECT is(pg_catalog.left(pg_temp.pa_attack(c.role, replace(c.q, '%USER%', current_setting('pa.user_id'))), CASE WHEN c.expect = 'ok' THEN 200 ELSE 5 END),
          c.expect,
          format('as %s with shadows first on its search_path: %s %s', c.role, c.label,
                 CASE WHEN c.expect = 'ok' THEN 'runs no shadow' ELSE 'fails with ' || c.expect || ', not in a shadow' END))
  FROM pa_calls c ORDER BY c.n;
RESET client_min_messages;

-- The shadows were within reach: code that does not pin its search_path
-- runs them, and reads the pg_temp tables.
SELECT is(left(pg_temp.pa_attack('pa_es', $$SELECT lower('X')$$), 5), 'PA001',
          'control: an unqualified lower() under the attacker''s search_path runs the shadow');
SELECT is(left(pg_temp.pa_attack('pa_es', $$SELECT 'a'::text = 'a'::text$$), 5), 'PA001',
          'control: an unqualified = on text under the attacker''s search_path runs the shadow');

SELECT is_empty(
    $$SELECT 'events' FROM pg_temp.events UNION ALL SELECT 'topics' FROM pg_temp.topics
      UNION ALL SELECT 'streams' FROM pg_temp.streams UNION ALL SELECT 'stream_heads' FROM pg_temp.stream_heads
      UNION ALL SELECT 'snapshots' FROM pg_temp.snapshots UNION ALL SELECT 'consumers' FROM pg_temp.consumers
      UNION ALL SELECT 'members' FROM pg_temp.members
      UNION ALL SELECT 'erased_streams' FROM pg_temp.erased_streams
      UNION ALL SELECT 'stream_name_key' FROM pg_temp.stream_name_key
      UNION ALL SELECT 'parked' FROM pg_temp.parked UNION ALL SELECT 'upcasters' FROM pg_temp.upcasters
      UNION ALL SELECT 'protections' FROM pg_temp.protections
      UNION ALL SELECT 'subject_keys' FROM pg_temp.subject_keys UNION ALL SELECT 'users' FROM pg_temp.users
      UNION ALL SELECT 'tokens' FROM pg_temp.tokens UNION ALL SELECT 'ticks' FROM pg_temp.ticks
      UNION ALL SELECT 'outbox' FROM pg_temp.outbox UNION ALL SELECT 'score_secret' FROM pg_temp.score_secret$$,
    'no call wrote to a pg_temp table named like an extension''s table'
);
SELECT is_empty(
    $$SELECT m.consumer || ': ' || m.last_error FROM eventstore.members m WHERE m.last_error ~* 'shadow'
      UNION ALL
      SELECT p.consumer || ': ' || p.error FROM eventstore.parked p WHERE p.error ~* 'shadow'$$,
    'no consumer recorded a shadow''s error (handlers'' errors are caught and recorded, not raised)'
);

-- Drop the shadows and the tables before checking what the calls did.
SET LOCAL client_min_messages = warning;
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
              WHERE p.proowner = 'pa_es'::regrole AND p.proname !~ '^pa_(handler|upcaster)$'
                AND p.pronamespace IN ('public'::regnamespace, pg_my_temp_schema())
    LOOP
        EXECUTE format('DROP FUNCTION %s CASCADE', f);
    END LOOP;
END
$$;
DROP TABLE pg_temp.events, pg_temp.topics, pg_temp.streams, pg_temp.consumers, pg_temp.members, pg_temp.parked,
           pg_temp.upcasters, pg_temp.protections, pg_temp.subject_keys, pg_temp.users,
           pg_temp.tokens, pg_temp.ticks, pg_temp.outbox, pg_temp.score_secret;
RESET client_min_messages;

SELECT results_eq(
    $$SELECT e.id::text, e.stream FROM eventstore.events e WHERE e.topic = 'pa_audit' ORDER BY e.position$$,
    $$VALUES ('7d1c0a52-0000-4000-8000-000000000001', NULL::text)$$,
    'the calls did their work: one event of pa_audit outside the erased stream is left'
);
SELECT ok(
    (SELECT e.data->'email' ? 'protected' FROM eventstore.events e
      WHERE e.id = '7d1c0a52-0000-4000-8000-000000000011'),
    'the calls did their work: the personal field was stored encrypted'
);
SELECT is(
    (SELECT count(*)::integer FROM birdwatch.ticks WHERE image_url = 'https://birds.example/pa-audit-1.jpg'),
    1,
    'the calls did their work: the tick is in TickAPI''s store'
);

------------------------------------------------------------------------------
-- 4. The upcaster attack (fixed in birdwatch--0.1--1.0.sql)
------------------------------------------------------------------------------

-- pa_tick, a member of birdwatch_tick_api that may create in public, turns
-- the upcaster's function it owns into SECURITY INVOKER with a search_path
-- that reaches its own = on text, which records who runs it and tries to
-- make pa_tick a superuser.  A reader then upcasts the old rate event.
CREATE TABLE public.pa_ran_as (role text, superuser boolean);
GRANT INSERT ON public.pa_ran_as TO PUBLIC;
SET LOCAL ROLE pa_tick;
CREATE FUNCTION public.pa_tick_eq(a text, b text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.pa_ran_as
    SELECT current_user, r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user;
    BEGIN
        EXECUTE 'ALTER ROLE pa_tick SUPERUSER';
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
    RETURN a OPERATOR(pg_catalog.=) b;
END
$$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.pa_tick_eq);
SELECT lives_ok(
    $$ALTER FUNCTION birdwatch.upcast_rate_1_to_2(jsonb) SECURITY INVOKER SET search_path = public, pg_catalog$$,
    'a member of birdwatch_tick_api may alter the upcaster''s function (it is its owner)'
);
RESET ROLE;

SET LOCAL ROLE pa_es;
SELECT is(
    (SELECT (eventstore.upcast(e)).envelope #>> '{data,image,owner}'
       FROM eventstore.get('7d1c0a52-0000-4000-8000-00000000aa01') e),
    current_setting('pa.user_id'),
    'a reader still upcasts the rate 1.0 event, with the owner from the ticks store'
);
RESET ROLE;
SELECT is(
    (SELECT array_agg(DISTINCT role || CASE WHEN superuser THEN ' (superuser)' ELSE '' END) FROM public.pa_ran_as),
    ARRAY['birdwatch_tick_api'],
    'the altered upcaster ran the planted operator as birdwatch_tick_api, its owner, and never as a superuser'
);
SELECT is(
    (SELECT rolsuper FROM pg_roles WHERE rolname = 'pa_tick'),
    false,
    'pa_tick, a member of birdwatch_tick_api, did not make itself a superuser through the upcaster'
);
DROP OPERATOR public.= (text, text);

------------------------------------------------------------------------------
-- 5. An unprivileged LOGIN role
------------------------------------------------------------------------------

SELECT is_empty(
    $$SELECT format('%s may %s on schema %s', who, p, n.nspname)
        FROM unnest(ARRAY['public', 'pa_nobody']) AS who,
             unnest(ARRAY['USAGE', 'CREATE']) AS p, pg_namespace n
       WHERE n.nspname IN ('eventstore', 'birdwatch') AND has_schema_privilege(who, n.oid, p)$$,
    'PUBLIC and pa_nobody have neither USAGE nor CREATE on schemas eventstore and birdwatch'
);
SELECT is_empty(
    $$SELECT format('%s may %s %s', who, p, c.oid::regclass)
        FROM unnest(ARRAY['public', 'pa_nobody']) AS who,
             unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p,
             pg_class c
       WHERE c.relnamespace IN ('eventstore'::regnamespace, 'birdwatch'::regnamespace)
         AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
         AND has_table_privilege(who, c.oid, p)
      UNION ALL
      SELECT format('%s may use sequence %s', who, c.oid::regclass)
        FROM unnest(ARRAY['public', 'pa_nobody']) AS who, pg_class c
       WHERE c.relnamespace IN ('eventstore'::regnamespace, 'birdwatch'::regnamespace)
         AND c.relkind = 'S' AND has_sequence_privilege(who, c.oid, 'USAGE,SELECT,UPDATE')
      UNION ALL
      SELECT format('%s may %s column %s.%s', who, p, a.attrelid::regclass, a.attname)
        FROM unnest(ARRAY['public', 'pa_nobody']) AS who,
             unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'REFERENCES']) AS p,
             pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
       WHERE c.relnamespace IN ('eventstore'::regnamespace, 'birdwatch'::regnamespace)
         AND c.relkind IN ('r', 'v') AND a.attnum > 0 AND NOT a.attisdropped
         AND has_column_privilege(who, a.attrelid, a.attnum, p)$$,
    'PUBLIC and pa_nobody have no privilege on any table, view, sequence or column of either extension'
);
SELECT is_empty(
    $$SELECT format('%s may use type %s', who, t.oid::regtype)
        FROM unnest(ARRAY['public', 'pa_nobody']) AS who, pg_type t JOIN pg_class c ON c.oid = t.typrelid
       WHERE t.typnamespace IN ('eventstore'::regnamespace, 'birdwatch'::regnamespace)
         AND c.relkind = 'c' AND has_type_privilege(who, t.oid, 'USAGE')$$,
    'PUBLIC and pa_nobody may not use the extensions'' composite types (event, delivery)'
);

SET LOCAL ROLE pa_nobody;
-- reading events
SELECT throws_ok($$SELECT * FROM eventstore.events$$, '42501', NULL, 'pa_nobody cannot read eventstore.events');
SELECT throws_ok($$SELECT * FROM eventstore.topics$$, '42501', NULL, 'pa_nobody cannot read eventstore.topics');
SELECT throws_ok($$SELECT * FROM eventstore.stored_events$$, '42501', NULL, 'pa_nobody cannot read eventstore.stored_events');
SELECT throws_ok($$SELECT * FROM eventstore.read('tick')$$, '42501', NULL, 'pa_nobody cannot call read');
SELECT throws_ok($$SELECT * FROM eventstore.read_stream('user', 'x')$$, '42501', NULL, 'pa_nobody cannot call read_stream');
SELECT throws_ok($$SELECT * FROM eventstore.get('7d1c0a52-0000-4000-8000-00000000aa01')$$, '42501', NULL, 'pa_nobody cannot call get');
SELECT throws_ok($$SELECT * FROM eventstore.poll('birdwatch_notifier')$$, '42501', NULL, 'pa_nobody cannot poll');
SELECT throws_ok($$SELECT * FROM eventstore.poll('birdwatch_notifier', 100, 0)$$, '42501', NULL, 'pa_nobody cannot poll a member');
SELECT throws_ok($$SELECT * FROM eventstore.consumer_status$$, '42501', NULL, 'pa_nobody cannot read consumer_status');
SELECT throws_ok($$SELECT * FROM eventstore.consumer_members$$, '42501', NULL, 'pa_nobody cannot read consumer_members');
SELECT throws_ok($$SELECT * FROM eventstore.members$$, '42501', NULL, 'pa_nobody cannot read eventstore.members');
SELECT throws_ok($$SELECT * FROM eventstore.parked$$, '42501', NULL, 'pa_nobody cannot read eventstore.parked');
SELECT throws_ok($$SELECT * FROM eventstore.undelivered('birdwatch_notifier')$$, '42501', NULL, 'pa_nobody cannot call undelivered');
-- personal data
SELECT throws_ok($$SELECT * FROM birdwatch.users$$, '42501', NULL, 'pa_nobody cannot read birdwatch.users');
SELECT throws_ok($$SELECT * FROM birdwatch.tokens$$, '42501', NULL, 'pa_nobody cannot read birdwatch.tokens');
SELECT throws_ok($$SELECT * FROM birdwatch.outbox$$, '42501', NULL, 'pa_nobody cannot read birdwatch.outbox');
SELECT throws_ok($$SELECT * FROM birdwatch.score_secret$$, '42501', NULL, 'pa_nobody cannot read the score secret');
SELECT throws_ok($$SELECT * FROM eventstore.subject_keys$$, '42501', NULL, 'pa_nobody cannot read eventstore.subject_keys');
SELECT throws_ok($$SELECT birdwatch.export_user_data('7d1c0a52-0000-4000-8000-00000000ab01')$$, '42501', NULL, 'pa_nobody cannot call export_user_data');
SELECT throws_ok($$SELECT * FROM birdwatch.email_address('7d1c0a52-0000-4000-8000-00000000ab01')$$, '42501', NULL, 'pa_nobody cannot call email_address');
SELECT throws_ok($$SELECT * FROM birdwatch.list_users()$$, '42501', NULL, 'pa_nobody cannot call list_users');
SELECT throws_ok($$SELECT * FROM birdwatch.claim_emails(1)$$, '42501', NULL, 'pa_nobody cannot claim emails');
SELECT throws_ok($$SELECT eventstore.unprotect(NULL)$$, '42501', NULL, 'pa_nobody cannot call unprotect');
-- appending
SELECT throws_ok($$SELECT eventstore.append('tick', '{}')$$, '42501', NULL, 'pa_nobody cannot append');
SELECT throws_ok($$SELECT eventstore.append_batch('tick', '{}')$$, '42501', NULL, 'pa_nobody cannot append_batch');
SELECT throws_ok($$SELECT birdwatch.register_user('nobody@example.com', 'Nobody')$$, '42501', NULL, 'pa_nobody cannot register a user');
SELECT throws_ok($$SELECT birdwatch.login('bw_pa_nobody')$$, '42501', NULL, 'pa_nobody cannot log in (login is for birdwatch_app)');
SELECT throws_ok($$SELECT birdwatch.tick('bw_pa_nobody', 'https://birds.example/nobody.jpg')$$, '42501', NULL, 'pa_nobody cannot tick');
SELECT throws_ok($$SELECT birdwatch.rate('bw_pa_nobody', 'https://birds.example/pa-audit-1.jpg', 5)$$, '42501', NULL, 'pa_nobody cannot rate');
SELECT throws_ok($$SELECT birdwatch.forget_me('bw_pa_nobody')$$, '42501', NULL, 'pa_nobody cannot call forget_me');
SELECT throws_ok($$INSERT INTO eventstore.events (id) VALUES ('7d1c0a52-0000-4000-8000-0000000000ff')$$, '42501', NULL, 'pa_nobody cannot insert into eventstore.events');
-- consumers
SELECT throws_ok($$SELECT eventstore.create_consumer('pa_nobody_c', ARRAY['tick'])$$, '42501', NULL, 'pa_nobody cannot create a consumer');
SELECT throws_ok($$SELECT eventstore.drop_consumer('birdwatch_notifier')$$, '42501', NULL, 'pa_nobody cannot drop a consumer');
SELECT throws_ok($$SELECT eventstore.reset_consumer('birdwatch_notifier', 0)$$, '42501', NULL, 'pa_nobody cannot reset a consumer');
SELECT throws_ok($$SELECT eventstore.run_consumer('birdwatch_notifier')$$, '42501', NULL, 'pa_nobody cannot run a consumer');
SELECT throws_ok($$SELECT eventstore.ack('birdwatch_notifier', 1)$$, '42501', NULL, 'pa_nobody cannot ack');
SELECT throws_ok($$SELECT eventstore.replay_parked('birdwatch_notifier', '7d1c0a52-0000-4000-8000-00000000aa01')$$, '42501', NULL, 'pa_nobody cannot replay a parked event');
SELECT throws_ok($$SELECT eventstore.set_consumer_members('birdwatch_notifier', 2)$$, '42501', NULL, 'pa_nobody cannot change the members of a consumer');
SELECT throws_ok($$UPDATE eventstore.consumers SET members = 1$$, '42501', NULL, 'pa_nobody cannot update eventstore.consumers');
SELECT throws_ok($$UPDATE eventstore.members SET position = 0$$, '42501', NULL, 'pa_nobody cannot update eventstore.members');
SELECT throws_ok($$SELECT nextval('eventstore.batch_ids')$$, '42501', NULL, 'pa_nobody cannot take a batch id');
-- grants, erasure, retention, topics
SELECT throws_ok($$SELECT eventstore.grant_topic('tick', 'read', 'pa_nobody')$$, '42501', NULL, 'pa_nobody cannot grant itself a topic');
SELECT throws_ok($$SELECT eventstore.erase_stream('user', 'x')$$, '42501', NULL, 'pa_nobody cannot erase a stream');
SELECT throws_ok($$SELECT eventstore.purge_expired()$$, '42501', NULL, 'pa_nobody cannot purge');
SELECT throws_ok($$SELECT eventstore.set_retention('tick', '1 day')$$, '42501', NULL, 'pa_nobody cannot set a retention');
SELECT throws_ok($$SELECT eventstore.forget_subject('x')$$, '42501', NULL, 'pa_nobody cannot forget a subject');
SELECT throws_ok($$SELECT eventstore.create_topic('pa_nobody_t')$$, '42501', NULL, 'pa_nobody cannot create a topic');
SELECT throws_ok($$SELECT birdwatch.delete_user('7d1c0a52-0000-4000-8000-00000000ab01')$$, '42501', NULL, 'pa_nobody cannot delete a user');
SELECT throws_ok($$SELECT birdwatch.set_score_secret('a secret of pa_nobody')$$, '42501', NULL, 'pa_nobody cannot set the score secret');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
