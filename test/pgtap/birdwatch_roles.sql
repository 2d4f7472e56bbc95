-- test/pgtap/birdwatch_roles.sql: the role matrix of birdwatch.
--
-- Rules (sql/birdwatch--0.1.sql, header and grants; docs/events.md):
-- every service of the system is a role and owns its functions, so that a
-- SECURITY DEFINER function acts with exactly its service's privileges;
-- tables belong to the extension's owner and are granted table by table;
-- nothing is granted to PUBLIC.  Personal data (birdwatch.users, tokens) is
-- UserAPI's alone; the score secret is the ScoreModel's alone to read; each
-- service appends to and consumes exactly its topics of docs/events.md (per-topic
-- grants in eventstore.topics); AdminAPI's changes are recorded as audit
-- events that name the acting role.
--
-- AdminAPI's calls that change something (delete_user, set_score_secret) are
-- SECURITY DEFINER functions of birdwatch_audit, a role granted to nobody:
-- it alone appends to audit, asks TickAPI for an erasure and writes (never
-- reads) the score secret, so that a member of birdwatch_admin_api can do
-- none of these except through a call that records it.  The audit event's
-- data.actor.role is the role the session acts as (SET ROLE's, else the
-- login role); data.actor.session_user is the login role.
--
-- Checked as in privileges.sql: the catalogue (ACLs, owners, proconfig,
-- eventstore.topics), then what each role can actually do under SET LOCAL
-- ROLE, then the audit events of AdminAPI.  Everything happens in one
-- transaction that is rolled back, including the test roles.  Inside it the
-- in-database consumers never run (the dispatcher sees committed events
-- only): a gdpr event does not remove anybody here, and the outbox is filled
-- by hand.
--
-- Values are carried across role switches in transaction-local settings
-- (bw_test.*), which any role may read and set.

BEGIN;
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS birdwatch CASCADE;
RESET client_min_messages;

SELECT plan(365);

-- A suffix for the emails, tokens and image URLs of this run, and the last
-- event position before it: the events appended here come after it.
DO $$
BEGIN
    PERFORM set_config('bw_test.run', left(replace(gen_random_uuid()::text, '-', ''), 12), true);
    PERFORM set_config('bw_test.pos0', coalesce(max(position), 0)::text, true) FROM eventstore.events;
END
$$;

------------------------------------------------------------------------------
-- Catalogue: the service roles
------------------------------------------------------------------------------

SELECT is(
    (SELECT array_agg(format('%s login=%s super=%s createrole=%s bypassrls=%s',
                             rolname, rolcanlogin::text, rolsuper::text, rolcreaterole::text, rolbypassrls::text)
                      ORDER BY rolname COLLATE "C")
       FROM pg_roles WHERE rolname LIKE 'birdwatch\_%'),
    ARRAY['birdwatch_admin_api login=false super=false createrole=false bypassrls=false',
          'birdwatch_app login=false super=false createrole=false bypassrls=false',
          'birdwatch_audit login=false super=false createrole=false bypassrls=false',
          'birdwatch_auth_api login=false super=false createrole=false bypassrls=false',
          'birdwatch_export login=false super=false createrole=false bypassrls=false',
          'birdwatch_notifier login=false super=false createrole=false bypassrls=false',
          'birdwatch_score_model login=false super=false createrole=false bypassrls=false',
          'birdwatch_statistics login=false super=false createrole=false bypassrls=false',
          'birdwatch_tick_api login=false super=false createrole=false bypassrls=false',
          'birdwatch_user_api login=false super=false createrole=false bypassrls=false'],
    'the ten service roles exist, NOLOGIN, without SUPERUSER, CREATEROLE or BYPASSRLS'
);
SELECT is(
    (SELECT array_agg(m.member::regrole::text || ' in ' || m.roleid::regrole::text)
       FROM pg_auth_members m
      WHERE m.member IN (SELECT oid FROM pg_roles WHERE rolname LIKE 'birdwatch\_%')),
    ARRAY['birdwatch_export in eventstore_reader'],
    'no service role is a member of any role (of another service, or of an eventstore role), '
    'but birdwatch_export of eventstore_reader (it reads one person''s events for export_user_data)'
);
SELECT is(
    (SELECT array_agg(r.rolname::text || ' has privileges of ' || g)
       FROM pg_roles r
      CROSS JOIN unnest(ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin']) AS g
      WHERE r.rolname LIKE 'birdwatch\_%' AND pg_has_role(r.oid, g, 'USAGE')),
    ARRAY['birdwatch_export has privileges of eventstore_reader'],
    'no service role has the privileges of eventstore_writer, eventstore_reader or eventstore_admin '
    '(only per-topic grants), but birdwatch_export'
);
SELECT is(
    (SELECT array_agg(m.member::regrole::text ORDER BY m.member::regrole::text COLLATE "C")
       FROM pg_auth_members m WHERE m.roleid = 'birdwatch_export'::regrole),
    NULL,
    'birdwatch_export is granted to nobody (no member in pg_auth_members)'
);
SELECT is(
    (SELECT array_agg(m.member::regrole::text ORDER BY m.member::regrole::text COLLATE "C")
       FROM pg_auth_members m WHERE m.roleid = 'birdwatch_audit'::regrole),
    NULL,
    'birdwatch_audit is granted to nobody (no member in pg_auth_members)'
);
SELECT is(
    (SELECT array_agg(r.rolname::text ORDER BY r.rolname COLLATE "C")
       FROM pg_roles r
      WHERE r.rolname <> 'birdwatch_audit' AND NOT r.rolsuper
        AND pg_has_role(r.oid, 'birdwatch_audit', 'MEMBER')),
    NULL,
    'no role but birdwatch_audit itself (and superusers) is a member of birdwatch_audit, directly or not'
);

------------------------------------------------------------------------------
-- Catalogue: functions, their owners and who may execute them
------------------------------------------------------------------------------

-- owner NULL: the extension's owner.  execute: the roles in the ACL with
-- EXECUTE, other than the extension's owner (PUBLIC would show as PUBLIC).
CREATE TEMP TABLE bw_expected_fn (fn text PRIMARY KEY, owner text, secdef boolean, execute text[]);
INSERT INTO bw_expected_fn VALUES
    -- shared helpers
    ('birdwatch.rfc3339_now()', NULL, false,
     '{birdwatch_audit,birdwatch_auth_api,birdwatch_notifier,birdwatch_score_model,birdwatch_tick_api}'),
    ('birdwatch.envelope(uuid,text,text,jsonb,text)', NULL, false,
     '{birdwatch_audit,birdwatch_auth_api,birdwatch_notifier,birdwatch_score_model,birdwatch_tick_api}'),
    -- what consumers read out of events, checked
    ('birdwatch.as_uuid(jsonb)', NULL, false,
     '{birdwatch_notifier,birdwatch_score_model,birdwatch_statistics,birdwatch_user_api}'),
    ('birdwatch.as_grade(jsonb)', NULL, false,
     '{birdwatch_notifier,birdwatch_score_model,birdwatch_statistics,birdwatch_user_api}'),
    ('birdwatch.as_image_url(jsonb)', NULL, false,
     '{birdwatch_notifier,birdwatch_score_model,birdwatch_statistics,birdwatch_user_api}'),
    -- UserAPI
    ('birdwatch.token_hash(text)', NULL, false, '{birdwatch_user_api}'),
    ('birdwatch.check_email(text)', NULL, false, '{birdwatch_user_api}'),
    ('birdwatch.check_display_name(text)', NULL, false, '{birdwatch_user_api}'),
    ('birdwatch.register_user(text,text)', 'birdwatch_user_api', true, '{birdwatch_app,birdwatch_user_api}'),
    ('birdwatch.resolve_token(text)', 'birdwatch_user_api', true, '{birdwatch_auth_api,birdwatch_user_api}'),
    ('birdwatch.email_address(uuid)', 'birdwatch_user_api', true,
     '{birdwatch_audit,birdwatch_notifier,birdwatch_user_api}'),
    ('birdwatch.list_users(integer,integer)', 'birdwatch_user_api', true, '{birdwatch_admin_api,birdwatch_user_api}'),
    ('birdwatch.user_count()', 'birdwatch_user_api', true, '{birdwatch_admin_api,birdwatch_user_api}'),
    ('birdwatch.forget_user(eventstore.event)', 'birdwatch_user_api', false, '{birdwatch_user_api}'),
    ('birdwatch.export_user_data(uuid)', 'birdwatch_user_api', true, '{birdwatch_admin_api,birdwatch_user_api}'),
    ('birdwatch.user_events(uuid)', 'birdwatch_export', true, '{birdwatch_export,birdwatch_user_api}'),
    -- AuthAPI
    ('birdwatch.authenticate(text,text,boolean)', 'birdwatch_auth_api', true, '{birdwatch_auth_api,birdwatch_tick_api}'),
    ('birdwatch.login(text,text)', 'birdwatch_auth_api', true, '{birdwatch_app,birdwatch_auth_api}'),
    -- TickAPI
    ('birdwatch.check_image_url(text)', NULL, false, '{birdwatch_tick_api}'),
    ('birdwatch.tick(text,text)', 'birdwatch_tick_api', true, '{birdwatch_app,birdwatch_tick_api}'),
    ('birdwatch.rate(text,text,integer)', 'birdwatch_tick_api', true, '{birdwatch_app,birdwatch_tick_api}'),
    ('birdwatch.request_erasure(uuid)', 'birdwatch_tick_api', true, '{birdwatch_audit,birdwatch_tick_api}'),
    ('birdwatch.forget_me(text)', 'birdwatch_tick_api', true, '{birdwatch_app,birdwatch_tick_api}'),
    ('birdwatch.upcast_rate_1_to_2(jsonb)', 'birdwatch_tick_api', true, '{birdwatch_tick_api}'),
    -- ScoreModel
    ('birdwatch.score_image(text)', 'birdwatch_score_model', false, '{birdwatch_score_model}'),
    ('birdwatch.score_tick(eventstore.event)', 'birdwatch_score_model', false, '{birdwatch_score_model}'),
    ('birdwatch.replace_score_secret()', NULL, false, '{}'),
    -- Notifier
    ('birdwatch.notify_rating(eventstore.event)', 'birdwatch_notifier', false, '{birdwatch_notifier}'),
    ('birdwatch.email_retry_delay(integer)', NULL, false, '{birdwatch_notifier}'),
    ('birdwatch.claim_emails(integer)', 'birdwatch_notifier', true, '{birdwatch_notifier}'),
    ('birdwatch.email_sent(uuid)', 'birdwatch_notifier', true, '{birdwatch_notifier}'),
    ('birdwatch.email_failed(uuid,text)', 'birdwatch_notifier', true, '{birdwatch_notifier}'),
    -- run by eventstore's retention passes as the Notifier
    ('birdwatch.purge_notifier(timestamp with time zone,integer)', 'birdwatch_notifier', true, '{birdwatch_notifier}'),
    -- Statistics
    ('birdwatch.count_event(eventstore.event)', 'birdwatch_statistics', false, '{birdwatch_statistics}'),
    ('birdwatch.overview()', 'birdwatch_statistics', true, '{birdwatch_admin_api,birdwatch_statistics}'),
    ('birdwatch.daily(date,date)', 'birdwatch_statistics', true, '{birdwatch_admin_api,birdwatch_statistics}'),
    -- AdminAPI: the overview runs as its caller; the calls that change
    -- something run as birdwatch_audit, whose audit() nobody else may call
    ('birdwatch.admin_overview()', 'birdwatch_admin_api', false, '{birdwatch_admin_api}'),
    ('birdwatch.audit(text,text,jsonb)', 'birdwatch_audit', false, '{birdwatch_audit}'),
    ('birdwatch.delete_user(uuid)', 'birdwatch_audit', true, '{birdwatch_admin_api,birdwatch_audit}'),
    ('birdwatch.set_score_secret(text)', 'birdwatch_audit', true, '{birdwatch_admin_api,birdwatch_audit}');

SELECT set_eq(
    $$SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'birdwatch'::regnamespace$$,
    $$SELECT fn FROM bw_expected_fn$$,
    'schema birdwatch has exactly the 40 functions of the expected table'
);

-- EXECUTE, function by function, straight from the ACL
SELECT is(
    (SELECT coalesce(array_agg(CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
                               ORDER BY CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END COLLATE "C"),
                     '{}')
       FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
      WHERE a.privilege_type = 'EXECUTE'
        AND a.grantee <> (SELECT extowner FROM pg_extension WHERE extname = 'birdwatch')),
    e.execute,
    format('EXECUTE on %s: exactly %s', e.fn,
           coalesce(nullif(array_to_string(e.execute, ', '), ''), 'the extension owner'))
)
  FROM bw_expected_fn e
  LEFT JOIN pg_proc p ON p.oid = to_regprocedure(e.fn)
 ORDER BY e.fn;

-- owner and SECURITY DEFINER, function by function
SELECT is(
    (SELECT format('owner %s, %s',
                   CASE WHEN p.proowner = x.extowner THEN 'the extension owner' ELSE p.proowner::regrole::text END,
                   CASE WHEN p.prosecdef THEN 'SECURITY DEFINER' ELSE 'SECURITY INVOKER' END)
       FROM pg_extension x WHERE x.extname = 'birdwatch'),
    format('owner %s, %s', coalesce(e.owner, 'the extension owner'),
           CASE WHEN e.secdef THEN 'SECURITY DEFINER' ELSE 'SECURITY INVOKER' END),
    format('%s is owned by %s and is %s', e.fn, coalesce(e.owner, 'the extension owner'),
           CASE WHEN e.secdef THEN 'SECURITY DEFINER' ELSE 'SECURITY INVOKER' END)
)
  FROM bw_expected_fn e
  LEFT JOIN pg_proc p ON p.oid = to_regprocedure(e.fn)
 ORDER BY e.fn;

-- every SECURITY DEFINER function pins its search_path
SELECT is(
    p.proconfig,
    ARRAY['search_path=pg_catalog, pg_temp'],
    format('%s (SECURITY DEFINER) has search_path=pg_catalog, pg_temp', p.oid::regprocedure)
)
  FROM pg_proc p
 WHERE p.pronamespace = 'birdwatch'::regnamespace AND p.prosecdef
 ORDER BY p.oid::regprocedure::text;
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text COLLATE "C")
       FROM pg_proc p
      WHERE p.pronamespace = 'birdwatch'::regnamespace AND p.prosecdef
        AND (p.proowner = (SELECT extowner FROM pg_extension WHERE extname = 'birdwatch')
             OR (SELECT rolsuper FROM pg_roles WHERE oid = p.proowner)
             OR p.proowner::regrole::text NOT LIKE 'birdwatch\_%')),
    NULL,
    'no SECURITY DEFINER function of birdwatch is owned by the extension owner, a superuser or a non-service role'
);

------------------------------------------------------------------------------
-- Catalogue: nothing for PUBLIC
------------------------------------------------------------------------------

SELECT is(
    (SELECT count(*) FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
      WHERE n.nspname = 'birdwatch' AND a.grantee = 0),
    0::bigint,
    'PUBLIC has no privilege on schema birdwatch'
);
SELECT is(has_schema_privilege('public', 'birdwatch', 'USAGE'), false,
    'has_schema_privilege(public, birdwatch, USAGE) is false');
SELECT is(
    (SELECT array_agg(c.relname::text ORDER BY c.relname COLLATE "C")
       FROM pg_class c
      WHERE c.relnamespace = 'birdwatch'::regnamespace
        AND (EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 0)
             OR EXISTS (SELECT FROM pg_attribute t, aclexplode(t.attacl) a
                         WHERE t.attrelid = c.oid AND a.grantee = 0))),
    NULL,
    'PUBLIC has no privilege on any table, view, sequence or column of birdwatch'
);
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text COLLATE "C")
       FROM pg_proc p
      WHERE p.pronamespace = 'birdwatch'::regnamespace
        AND EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                     WHERE a.grantee = 0)),
    NULL,
    'PUBLIC may execute no function of birdwatch (no ACL left at its default)'
);

------------------------------------------------------------------------------
-- Catalogue: tables
------------------------------------------------------------------------------

-- The grants of every table, other than its owner's: relation ACLs and
-- column ACLs.
SELECT set_eq(
    $$SELECT c.relname::text, a.grantee::regrole::text, a.privilege_type::text, NULL::text
        FROM pg_class c, aclexplode(c.relacl) a
       WHERE c.relnamespace = 'birdwatch'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'S', 'p')
         AND a.grantee <> c.relowner
      UNION ALL
      SELECT c.relname::text, a.grantee::regrole::text, a.privilege_type::text, t.attname::text
        FROM pg_class c JOIN pg_attribute t ON t.attrelid = c.oid, aclexplode(t.attacl) a
       WHERE c.relnamespace = 'birdwatch'::regnamespace AND a.grantee <> c.relowner$$,
    $$SELECT t, r, p, col
        FROM (VALUES ('users', 'birdwatch_user_api', NULL::text), ('tokens', 'birdwatch_user_api', NULL),
                     ('outbox', 'birdwatch_notifier', NULL), ('notification_skips', 'birdwatch_notifier', NULL),
                     ('stats_seen', 'birdwatch_statistics', NULL), ('stats_daily', 'birdwatch_statistics', NULL),
                     ('stats_ratings', 'birdwatch_statistics', NULL),
                     ('stats_image_scores', 'birdwatch_statistics', NULL),
                     ('stats_user_ticks', 'birdwatch_statistics', NULL),
                     ('stats_daily_logins', 'birdwatch_statistics', NULL),
                     ('stats_login_seen', 'birdwatch_statistics', NULL)) AS g(t, r, col),
             unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p
      UNION ALL
      VALUES ('ticks', 'birdwatch_tick_api', 'SELECT', NULL), ('ticks', 'birdwatch_tick_api', 'INSERT', NULL),
             -- AuthAPI's login sessions: started and read, never deleted
             -- (a forgotten user's row goes with the user, ON DELETE CASCADE)
             ('login_sessions', 'birdwatch_auth_api', 'SELECT', NULL),
             ('login_sessions', 'birdwatch_auth_api', 'INSERT', NULL),
             ('login_sessions', 'birdwatch_auth_api', 'UPDATE', NULL),
             ('score_secret', 'birdwatch_score_model', 'SELECT', NULL),
             -- set_score_secret writes the secret as birdwatch_audit, unread
             ('score_secret', 'birdwatch_audit', 'UPDATE', NULL),
             ('scored_ticks', 'birdwatch_score_model', 'SELECT', NULL),
             ('scored_ticks', 'birdwatch_score_model', 'INSERT', NULL),
             -- the gdpr consumer drops the unsent emails of a forgotten user
             ('outbox', 'birdwatch_user_api', 'DELETE', NULL),
             ('outbox', 'birdwatch_user_api', 'SELECT', 'user_id'),
             ('outbox', 'birdwatch_user_api', 'SELECT', 'sent_at'),
             ('outbox', 'birdwatch_user_api', 'SELECT', 'source_event'),
             ('notification_skips', 'birdwatch_user_api', 'INSERT', NULL),
             -- the Notifier's note of what its cleanup removed
             ('notifier_forgotten', 'birdwatch_notifier', 'SELECT', NULL),
             ('notifier_forgotten', 'birdwatch_notifier', 'INSERT', NULL),
             ('notifier_forgotten', 'birdwatch_notifier', 'UPDATE', NULL)$$,
    'the table grants of birdwatch are exactly the expected ones (relations and columns)'
);

SELECT is(
    (SELECT array_agg(DISTINCT a.grantee::regrole::text ORDER BY a.grantee::regrole::text)
       FROM pg_class c, aclexplode(c.relacl) a
      WHERE c.oid = 'birdwatch.users'::regclass AND a.grantee <> c.relowner),
    ARRAY['birdwatch_user_api'],
    'only birdwatch_user_api holds a privilege on birdwatch.users'
);
SELECT is(
    (SELECT array_agg(DISTINCT a.grantee::regrole::text ORDER BY a.grantee::regrole::text)
       FROM pg_class c, aclexplode(c.relacl) a
      WHERE c.oid = 'birdwatch.tokens'::regclass AND a.grantee <> c.relowner),
    ARRAY['birdwatch_user_api'],
    'only birdwatch_user_api holds a privilege on birdwatch.tokens'
);
SELECT is(
    (SELECT array_agg(t.attrelid::regclass::text || '.' || t.attname)
       FROM pg_attribute t
      WHERE t.attrelid IN ('birdwatch.users'::regclass, 'birdwatch.tokens'::regclass, 'birdwatch.score_secret'::regclass)
        AND t.attacl IS NOT NULL),
    NULL,
    'no column of users, tokens or score_secret has a grant of its own'
);
-- by membership too: which service or eventstore role can reach them
SELECT is(
    (SELECT array_agg(r.rolname::text || ' on ' || t ORDER BY r.rolname COLLATE "C", t COLLATE "C")
       FROM pg_roles r
      CROSS JOIN unnest(ARRAY['birdwatch.users', 'birdwatch.tokens']) AS t
      WHERE (r.rolname LIKE 'birdwatch\_%' OR r.rolname LIKE 'eventstore\_%')
        AND (has_table_privilege(r.oid, t, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
             OR has_any_column_privilege(r.oid, t, 'SELECT, INSERT, UPDATE, REFERENCES'))),
    ARRAY['birdwatch_user_api on birdwatch.tokens', 'birdwatch_user_api on birdwatch.users'],
    'of the service and eventstore roles, only birdwatch_user_api has any privilege on users and tokens'
);
SELECT is(
    (SELECT array_agg(DISTINCT a.grantee::regrole::text ORDER BY a.grantee::regrole::text)
       FROM pg_class c, aclexplode(c.relacl) a
      WHERE c.oid = 'birdwatch.score_secret'::regclass AND a.grantee <> c.relowner
        AND a.privilege_type = 'SELECT'),
    ARRAY['birdwatch_score_model'],
    'only birdwatch_score_model may SELECT birdwatch.score_secret (ACL)'
);
SELECT is(
    (SELECT array_agg(r.rolname::text ORDER BY r.rolname COLLATE "C")
       FROM pg_roles r
      WHERE (r.rolname LIKE 'birdwatch\_%' OR r.rolname LIKE 'eventstore\_%')
        AND has_any_column_privilege(r.oid, 'birdwatch.score_secret', 'SELECT')),
    ARRAY['birdwatch_score_model'],
    'of the service and eventstore roles, only birdwatch_score_model can read any column of score_secret'
);
SELECT is(
    (SELECT array_agg(r.rolname::text ORDER BY r.rolname COLLATE "C")
       FROM pg_roles r
      WHERE (r.rolname LIKE 'birdwatch\_%' OR r.rolname LIKE 'eventstore\_%')
        AND (has_table_privilege(r.oid, 'birdwatch.score_secret', 'INSERT, UPDATE, DELETE, TRUNCATE')
             OR has_any_column_privilege(r.oid, 'birdwatch.score_secret', 'INSERT, UPDATE'))),
    ARRAY['birdwatch_audit'],
    'of the service and eventstore roles, only birdwatch_audit can change score_secret (UPDATE; no INSERT, DELETE, TRUNCATE)'
);

------------------------------------------------------------------------------
-- Catalogue: per-topic grants
------------------------------------------------------------------------------

SELECT results_eq(
    $$SELECT t.name::text COLLATE "default",
             (SELECT array_agg(r::text ORDER BY r::text COLLATE "C") FROM unnest(t.appenders) r),
             (SELECT array_agg(r::text ORDER BY r::text COLLATE "C") FROM unnest(t.readers) r)
        FROM eventstore.topics t
       WHERE t.name IN ('tick', 'rate', 'score', 'notification', 'gdpr', 'user', 'audit')
       ORDER BY t.name COLLATE "C"$$,
    $$VALUES ('audit', ARRAY['birdwatch_audit'], ARRAY['birdwatch_statistics']),
             ('gdpr', ARRAY['birdwatch_tick_api'], ARRAY['birdwatch_statistics', 'birdwatch_user_api']),
             ('notification', ARRAY['birdwatch_notifier'], ARRAY['birdwatch_statistics']),
             -- birdwatch_tick_api reads rate to be the registrar of its
             -- upcaster, which then runs as it (privilege_audit.sql)
             ('rate', ARRAY['birdwatch_tick_api'], ARRAY['birdwatch_notifier', 'birdwatch_statistics', 'birdwatch_tick_api']),
             ('score', ARRAY['birdwatch_score_model'], ARRAY['birdwatch_statistics']),
             ('tick', ARRAY['birdwatch_tick_api'], ARRAY['birdwatch_score_model', 'birdwatch_statistics']),
             ('user', ARRAY['birdwatch_auth_api'], ARRAY['birdwatch_statistics'])$$,
    'the seven birdwatch topics exist with exactly their appenders and readers'
);
SELECT is(
    (SELECT array_agg(t.name::text ORDER BY t.name) FROM eventstore.topics t
      WHERE NOT 'birdwatch_statistics'::regrole = ANY (t.readers)
        AND t.name IN ('tick', 'rate', 'score', 'notification', 'gdpr', 'user', 'audit')),
    NULL,
    'birdwatch_statistics reads every birdwatch topic'
);
SELECT is(
    (SELECT array_agg(r::text || ' appends ' || t.name)
       FROM eventstore.topics t, unnest(t.appenders) r
      WHERE r::text IN ('birdwatch_app', 'birdwatch_user_api', 'birdwatch_statistics')),
    NULL,
    'birdwatch_app, birdwatch_user_api and birdwatch_statistics append to no topic'
);
SELECT is(
    (SELECT array_agg(r::text || ' appends ' || t.name ORDER BY t.name COLLATE "C")
       FROM eventstore.topics t, unnest(t.appenders) r
      WHERE r::text = 'birdwatch_admin_api'),
    NULL,
    'birdwatch_admin_api appends to no topic (not even audit: that is birdwatch_audit''s)'
);
SELECT is(
    (SELECT format('usage on eventstore=%s append=%s append_batch=%s consumer_status=%s undelivered=%s',
                   has_schema_privilege('birdwatch_admin_api', 'eventstore', 'USAGE')::text,
                   has_function_privilege('birdwatch_admin_api', 'eventstore.append(text,jsonb,text,bigint)', 'EXECUTE')::text,
                   has_function_privilege('birdwatch_admin_api', 'eventstore.append_batch(text,jsonb[],text,bigint)', 'EXECUTE')::text,
                   has_table_privilege('birdwatch_admin_api', 'eventstore.consumer_status', 'SELECT')::text,
                   has_function_privilege('birdwatch_admin_api', 'eventstore.undelivered(text)', 'EXECUTE')::text)),
    'usage on eventstore=true append=false append_batch=false consumer_status=true undelivered=true',
    'birdwatch_admin_api has USAGE on schema eventstore, consumer_status and undelivered, but not append or append_batch'
);

SELECT results_eq(
    $$SELECT c.name::text COLLATE "default", c.topics COLLATE "default", c.handler COLLATE "default", c.run_as::text
        FROM eventstore.consumers c WHERE c.name LIKE 'birdwatch\_%' ORDER BY c.name COLLATE "C"$$,
    $$VALUES ('birdwatch_notifier', ARRAY['rate'], 'birdwatch.notify_rating(eventstore.event)', 'birdwatch_notifier'),
             ('birdwatch_score_model', ARRAY['tick'], 'birdwatch.score_tick(eventstore.event)', 'birdwatch_score_model'),
             ('birdwatch_statistics', ARRAY['tick', 'rate', 'score', 'notification', 'gdpr', 'user', 'audit'],
              'birdwatch.count_event(eventstore.event)', 'birdwatch_statistics'),
             ('birdwatch_user_gdpr', ARRAY['gdpr'], 'birdwatch.forget_user(eventstore.event)', 'birdwatch_user_api')$$,
    'the birdwatch consumers read their topics and run as their service: score_model, notifier, statistics, user_api'
);
-- Members only where order and concurrency allow (BIRDWATCH.md, "Consumers
-- and their members").
SELECT results_eq(
    $$SELECT c.name::text COLLATE "default", c.members FROM eventstore.consumers c
       WHERE c.name LIKE 'birdwatch\_%' ORDER BY c.name COLLATE "C"$$,
    $$VALUES ('birdwatch_notifier', 4), ('birdwatch_score_model', 1),
             ('birdwatch_statistics', 1), ('birdwatch_user_gdpr', 1)$$,
    'the Notifier is spread over 4 members; ScoreModel, Statistics and the gdpr consumer have 1'
);

------------------------------------------------------------------------------
-- Fixtures: test roles, valid envelopes of every topic
------------------------------------------------------------------------------

-- Created here (and gone with the rollback) unless a previous run left them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bw_test_admin') THEN
        CREATE ROLE bw_test_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bw_test_nobody') THEN
        CREATE ROLE bw_test_nobody LOGIN;
    END IF;
END
$$;
SET client_min_messages = warning;
GRANT birdwatch_admin_api TO bw_test_admin;
RESET client_min_messages;

-- A valid envelope of each topic, of its current version and docs/events.md
-- shape (the id is replaced at each use), so that a refused append is
-- refused for the privilege, not the envelope.
CREATE TEMP TABLE bw_test_env (topic text PRIMARY KEY, env jsonb NOT NULL);
INSERT INTO bw_test_env
SELECT v.topic, birdwatch.envelope(gen_random_uuid(), v.type, v.version, v.data, v.source)
  FROM (VALUES
    ('tick', 'new', '1.0', '{"user": {"id": "00000000-0000-4000-8000-0000000000a1"},
                             "image": {"url": "https://birds.example/roles-tick.jpg"}}'::jsonb, 'services/TickAPI'),
    ('rate', 'update', '2.0', '{"user": {"id": "00000000-0000-4000-8000-0000000000a1"},
                                "image": {"url": "https://birds.example/roles-tick.jpg",
                                          "owner": "00000000-0000-4000-8000-0000000000a2"},
                                "rating": 3}', 'services/TickAPI'),
    ('score', 'update', '1.0', '{"image": {"url": "https://birds.example/roles-tick.jpg"}, "score": 4}',
     'services/ScoreModel'),
    ('notification', 'email', '1.0', '{"user": {"id": "00000000-0000-4000-8000-0000000000a2"},
                                       "message_type": "rate.update",
                                       "source_event": {"name": "rate", "type": "update",
                                                        "id": "00000000-0000-4000-8000-0000000000a3"}}',
     'services/Notifier'),
    ('gdpr', 'delete', '1.0', '{"user": {"id": "00000000-0000-4000-8000-0000000000a1"}}', 'services/TickAPI'),
    ('user', 'login', '1.0', '{"user": {"id": "00000000-0000-4000-8000-0000000000a1"}}', 'services/AuthAPI'),
    ('audit', 'update', '1.0', '{"action": "test.roles", "actor": {"role": "bw_test"}, "target": {}}',
     'services/AdminAPI')) AS v(topic, type, version, data, source);
GRANT SELECT ON bw_test_env TO PUBLIC;

SELECT is(
    (SELECT array_agg(topic ORDER BY topic) FROM bw_test_env WHERE eventstore.is_valid(env)),
    ARRAY['audit', 'gdpr', 'notification', 'rate', 'score', 'tick', 'user'],
    'setup: the envelopes used for refused appends are valid for all seven topics'
);

------------------------------------------------------------------------------
-- Behaviour: birdwatch_app, the client
------------------------------------------------------------------------------

SET LOCAL ROLE birdwatch_app;

SELECT lives_ok(
    $$SELECT set_config('bw_test.alice_id', user_id::text, true), set_config('bw_test.alice_token', token, true)
        FROM birdwatch.register_user('alice-' || current_setting('bw_test.run') || '@birds.example', 'Alice')$$,
    'app can register_user (alice)');
SELECT lives_ok(
    $$SELECT set_config('bw_test.bob_id', user_id::text, true), set_config('bw_test.bob_token', token, true)
        FROM birdwatch.register_user('bob-' || current_setting('bw_test.run') || '@birds.example', 'Bob')$$,
    'app can register_user (bob)');
SELECT lives_ok(
    $$SELECT set_config('bw_test.carol_id', user_id::text, true), set_config('bw_test.carol_token', token, true)
        FROM birdwatch.register_user('carol-' || current_setting('bw_test.run') || '@birds.example', 'Carol')$$,
    'app can register_user (carol)');
SELECT is(birdwatch.login(current_setting('bw_test.alice_token'))::text, current_setting('bw_test.alice_id'),
    'app can login: alice''s token stands for alice');
SELECT lives_ok(
    $$SELECT set_config('bw_test.tick_id',
                        birdwatch.tick(current_setting('bw_test.alice_token'),
                                       'https://birds.example/' || current_setting('bw_test.run') || '/robin.jpg')::text,
                        true)$$,
    'app can tick');
SELECT lives_ok(
    $$SELECT set_config('bw_test.rate_id',
                        birdwatch.rate(current_setting('bw_test.bob_token'),
                                       'https://birds.example/' || current_setting('bw_test.run') || '/robin.jpg', 4)::text,
                        true)$$,
    'app can rate');
SELECT lives_ok(
    $$SELECT set_config('bw_test.forget_id', birdwatch.forget_me(current_setting('bw_test.carol_token'))::text, true)$$,
    'app can forget_me');

SELECT throws_ok(
    $$SELECT eventstore.append('tick', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'tick'$$,
    '42501', NULL, 'app cannot call eventstore.append directly');
SELECT throws_ok(
    $$SELECT eventstore.append_batch('rate', ARRAY[jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))])
        FROM bw_test_env WHERE topic = 'rate'$$,
    '42501', NULL, 'app cannot call eventstore.append_batch directly');
SELECT throws_ok($$SELECT * FROM birdwatch.users$$, '42501', NULL, 'app cannot read birdwatch.users');
SELECT throws_ok($$SELECT * FROM birdwatch.tokens$$, '42501', NULL, 'app cannot read birdwatch.tokens');
SELECT throws_ok($$SELECT * FROM birdwatch.ticks$$, '42501', NULL, 'app cannot read birdwatch.ticks');
SELECT throws_ok($$SELECT * FROM birdwatch.score_secret$$, '42501', NULL, 'app cannot read birdwatch.score_secret');
SELECT throws_ok($$SELECT * FROM birdwatch.outbox$$, '42501', NULL, 'app cannot read birdwatch.outbox');
SELECT throws_ok($$SELECT * FROM birdwatch.list_users()$$, '42501', NULL, 'app cannot call list_users');
SELECT throws_ok($$SELECT * FROM birdwatch.claim_emails(10)$$, '42501', NULL, 'app cannot call claim_emails');
SELECT throws_ok($$SELECT birdwatch.email_address(current_setting('bw_test.alice_id')::uuid)$$,
    '42501', NULL, 'app cannot call email_address');
SELECT throws_ok($$SELECT birdwatch.resolve_token('some-token')$$, '42501', NULL, 'app cannot call resolve_token');
SELECT throws_ok($$SELECT birdwatch.admin_overview()$$, '42501', NULL, 'app cannot call admin_overview');
SELECT throws_ok($$SELECT birdwatch.delete_user(current_setting('bw_test.bob_id')::uuid)$$,
    '42501', NULL, 'app cannot call delete_user');
SELECT throws_ok($$SELECT birdwatch.set_score_secret('app-wants-this-secret-0123456789')$$,
    '42501', NULL, 'app cannot call set_score_secret');
SELECT throws_ok($$SELECT birdwatch.request_erasure(current_setting('bw_test.bob_id')::uuid)$$,
    '42501', NULL, 'app cannot call request_erasure (only forget_me, for its own token)');
SELECT throws_ok($$SELECT birdwatch.overview()$$, '42501', NULL, 'app cannot call overview');
-- and nothing else of the schema but its five functions (the NULL arguments
-- are subqueries: a constant NULL would let the planner fold a STRICT call
-- to NULL without ever checking EXECUTE)
SELECT throws_ok(
    format('SELECT %s(%s)', p.oid::regproc,
           (SELECT string_agg('(SELECT NULL::' || format_type(t, NULL) || ')', ', ' ORDER BY i)
              FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, i))),
    '42501', NULL,
    format('app cannot call %s', p.oid::regprocedure))
  FROM pg_proc p
 WHERE p.pronamespace = 'birdwatch'::regnamespace
   AND p.proname NOT IN ('register_user', 'login', 'tick', 'rate', 'forget_me')
 ORDER BY p.oid::regprocedure::text;

RESET ROLE;

SELECT is(
    (SELECT format('%s %s %s', e.topic, e.envelope #>> '{data,user,id}', e.envelope #>> '{data,image,url}')
       FROM eventstore.get(current_setting('bw_test.tick_id')::uuid) e),
    format('tick %s https://birds.example/%s/robin.jpg', current_setting('bw_test.alice_id'), current_setting('bw_test.run')),
    'the app''s tick appended tick/new for alice through TickAPI'
);
SELECT is(
    (SELECT format('%s %s', e.topic, e.envelope #>> '{data,user,id}')
       FROM eventstore.get(current_setting('bw_test.forget_id')::uuid) e),
    format('gdpr %s', current_setting('bw_test.carol_id')),
    'the app''s forget_me appended gdpr/delete for carol through TickAPI'
);

------------------------------------------------------------------------------
-- Behaviour: birdwatch_score_model
------------------------------------------------------------------------------

SET LOCAL ROLE birdwatch_score_model;

SELECT throws_ok($$SELECT * FROM birdwatch.users$$, '42501', NULL, 'score_model cannot read birdwatch.users');
SELECT throws_ok($$SELECT * FROM birdwatch.tokens$$, '42501', NULL, 'score_model cannot read birdwatch.tokens');
SELECT throws_ok($$SELECT birdwatch.email_address(current_setting('bw_test.alice_id')::uuid)$$,
    '42501', NULL, 'score_model cannot call email_address');
SELECT throws_ok($$SELECT * FROM birdwatch.list_users()$$, '42501', NULL, 'score_model cannot call list_users');
SELECT throws_ok($$SELECT * FROM birdwatch.ticks$$, '42501', NULL, 'score_model cannot read birdwatch.ticks');
SELECT lives_ok($$SELECT secret FROM birdwatch.score_secret$$, 'score_model can read score_secret');
SELECT cmp_ok((SELECT length(secret) FROM birdwatch.score_secret), '>=', 16,
    'score_model reads a secret of at least 16 characters');
SELECT throws_ok($$UPDATE birdwatch.score_secret SET secret = 'score-model-own-secret-0123456789'$$,
    '42501', 'permission denied for table score_secret',
    'score_model cannot UPDATE score_secret (only set_score_secret, as birdwatch_audit, writes it)');
SELECT throws_ok($$SELECT birdwatch.set_score_secret('score-model-own-secret-0123456789')$$,
    '42501', NULL, 'score_model cannot call set_score_secret');
SELECT throws_ok(
    $$SELECT eventstore.append('tick', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'tick'$$,
    '42501', 'permission denied to append to topic "tick"',
    'score_model cannot append to tick (a valid envelope; eventstore''s own refusal)');
SELECT throws_ok(
    $$SELECT eventstore.append('notification', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid())))
        FROM bw_test_env WHERE topic = 'notification'$$,
    '42501', 'permission denied to append to topic "notification"',
    'score_model cannot append to notification');
SELECT lives_ok(
    $$SELECT eventstore.append('score', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'score'$$,
    'score_model can append to score');
SELECT throws_ok($$SELECT * FROM eventstore.read('tick')$$, '42501', NULL,
    'score_model cannot read tick ad hoc (consuming is through its consumer only)');

RESET ROLE;

------------------------------------------------------------------------------
-- Behaviour: birdwatch_notifier
------------------------------------------------------------------------------

SET LOCAL ROLE birdwatch_notifier;

SELECT is(
    (SELECT format('%s %s', known::text, email) FROM birdwatch.email_address(current_setting('bw_test.alice_id')::uuid)),
    format('true alice-%s@birds.example', current_setting('bw_test.run')),
    'notifier can call email_address: alice is known, with her address'
);
SELECT lives_ok(
    $$INSERT INTO birdwatch.outbox (id, user_id, source_event, image_url, rating)
      VALUES ('00000000-0000-4000-8000-0000000000e1', current_setting('bw_test.alice_id')::uuid,
              current_setting('bw_test.rate_id')::uuid,
              'https://birds.example/' || current_setting('bw_test.run') || '/robin.jpg', 4)$$,
    'notifier can write its outbox');
SELECT is(
    (SELECT array_agg(format('%s %s', id, recipient)) FROM birdwatch.claim_emails(10)),
    ARRAY[format('00000000-0000-4000-8000-0000000000e1 alice-%s@birds.example', current_setting('bw_test.run'))],
    'notifier can call claim_emails: it gets the due email with the address from UserAPI'
);
SELECT lives_ok($$SELECT birdwatch.email_sent('00000000-0000-4000-8000-0000000000e1')$$,
    'notifier can call email_sent (appends notification)');
SELECT throws_ok($$SELECT * FROM birdwatch.users$$, '42501', NULL, 'notifier cannot read birdwatch.users');
SELECT throws_ok($$SELECT * FROM birdwatch.tokens$$, '42501', NULL, 'notifier cannot read birdwatch.tokens');
SELECT throws_ok($$SELECT * FROM birdwatch.list_users()$$, '42501', NULL, 'notifier cannot call list_users');
SELECT throws_ok($$SELECT birdwatch.resolve_token('some-token')$$, '42501', NULL, 'notifier cannot call resolve_token');
SELECT throws_ok(
    $$SELECT eventstore.append('rate', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'rate'$$,
    '42501', 'permission denied to append to topic "rate"',
    'notifier cannot append to rate');
SELECT throws_ok($$SELECT * FROM birdwatch.score_secret$$, '42501', NULL, 'notifier cannot read score_secret');

RESET ROLE;

SELECT is(
    (SELECT format('%s %s %s', e.topic, e.envelope #>> '{data,user,id}', e.envelope #>> '{metadata,source}')
       FROM eventstore.get('00000000-0000-4000-8000-0000000000e1') e),
    format('notification %s services/Notifier', current_setting('bw_test.alice_id')),
    'email_sent appended notification/email for alice'
);

------------------------------------------------------------------------------
-- Behaviour: birdwatch_statistics
------------------------------------------------------------------------------

SET LOCAL ROLE birdwatch_statistics;

SELECT throws_ok($$SELECT * FROM birdwatch.users$$, '42501', NULL, 'statistics cannot read birdwatch.users');
SELECT throws_ok($$SELECT * FROM birdwatch.tokens$$, '42501', NULL, 'statistics cannot read birdwatch.tokens');
SELECT throws_ok($$SELECT birdwatch.email_address(current_setting('bw_test.alice_id')::uuid)$$,
    '42501', NULL, 'statistics cannot call email_address');
SELECT throws_ok(
    format('SELECT eventstore.append(%L, jsonb_set(%L::jsonb, ''{id}'', to_jsonb(gen_random_uuid())))', topic, env),
    '42501', NULL, format('statistics cannot append to %s', topic))
  FROM bw_test_env ORDER BY topic;
SELECT lives_ok($$SELECT * FROM birdwatch.stats_daily$$, 'statistics can read its stats_daily');
SELECT lives_ok($$SELECT birdwatch.overview()$$, 'statistics can call overview');

RESET ROLE;

------------------------------------------------------------------------------
-- Behaviour: birdwatch_admin_api
------------------------------------------------------------------------------

SET LOCAL ROLE birdwatch_admin_api;

SELECT lives_ok($$SELECT set_config('bw_test.admin_overview', birdwatch.admin_overview()::text, true)$$,
    'admin_api can call admin_overview');
SELECT cmp_ok((current_setting('bw_test.admin_overview')::jsonb->>'users')::integer, '>=', 3,
    'admin_overview counts the registered users');
SELECT is(
    (SELECT count(*) FROM birdwatch.list_users(10000)
      WHERE user_id IN (current_setting('bw_test.alice_id')::uuid, current_setting('bw_test.bob_id')::uuid,
                        current_setting('bw_test.carol_id')::uuid)),
    3::bigint,
    'admin_api can call list_users: alice, bob and carol are listed'
);
SELECT lives_ok($$SELECT birdwatch.overview()$$, 'admin_api can call overview');
SELECT lives_ok($$SELECT * FROM birdwatch.daily(current_date - 7, current_date)$$, 'admin_api can call daily');
SELECT lives_ok($$SELECT birdwatch.delete_user(current_setting('bw_test.carol_id')::uuid)$$,
    'admin_api can call delete_user');
SELECT lives_ok($$SELECT birdwatch.set_score_secret('admin-api-secret-' || current_setting('bw_test.run'))$$,
    'admin_api can call set_score_secret');
SELECT throws_ok($$SELECT * FROM birdwatch.score_secret$$, '42501', NULL, 'admin_api cannot read score_secret');
SELECT throws_ok($$SELECT * FROM birdwatch.users$$, '42501', NULL, 'admin_api cannot read birdwatch.users directly');
SELECT throws_ok($$SELECT * FROM birdwatch.tokens$$, '42501', NULL, 'admin_api cannot read birdwatch.tokens directly');
SELECT throws_ok($$SELECT birdwatch.score_image('https://birds.example/x.jpg')$$,
    '42501', NULL, 'admin_api cannot call score_image (which reads the secret)');
SELECT throws_ok(
    $$SELECT birdwatch.tick(current_setting('bw_test.alice_token'), 'https://birds.example/' || current_setting('bw_test.run') || '/admin.jpg')$$,
    '42501', NULL, 'admin_api cannot tick');
-- admin_api holds no topic grant, hence no EXECUTE on eventstore.append:
-- its appends are refused before eventstore's per-topic check (which is
-- checked below with EXECUTE granted for the occasion).
SELECT throws_ok(
    $$SELECT eventstore.append('tick', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'tick'$$,
    '42501', 'permission denied for function append',
    'admin_api cannot append to tick (no EXECUTE on eventstore.append)');
SELECT throws_ok(
    $$SELECT eventstore.append('gdpr', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'gdpr'$$,
    '42501', 'permission denied for function append',
    'admin_api cannot append to gdpr itself (only through delete_user, as birdwatch_audit, and TickAPI''s request_erasure)');
-- the audit gaps: no audit event, erasure or secret but through the calls
-- that record them
SELECT throws_ok(
    $$SELECT eventstore.append('audit', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'audit'$$,
    '42501', 'permission denied for function append',
    'admin_api cannot append to audit (a valid envelope; no EXECUTE on eventstore.append)');
SELECT throws_ok(
    $$SELECT eventstore.append_batch('audit', ARRAY[jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))])
        FROM bw_test_env WHERE topic = 'audit'$$,
    '42501', 'permission denied for function append_batch',
    'admin_api cannot append_batch to audit');
SELECT throws_ok($$SELECT birdwatch.request_erasure(current_setting('bw_test.alice_id')::uuid)$$,
    '42501', 'permission denied for function request_erasure',
    'admin_api cannot call request_erasure directly (an erasure without audit event)');
SELECT throws_ok($$SELECT birdwatch.audit('delete', 'user.delete', '{}'::jsonb)$$,
    '42501', 'permission denied for function audit',
    'admin_api cannot call audit directly (a made-up audit event)');
SELECT throws_ok($$UPDATE birdwatch.score_secret SET secret = 'admin-api-direct-secret-0123456789'$$,
    '42501', 'permission denied for table score_secret',
    'admin_api cannot UPDATE score_secret directly (a secret change without audit event)');
-- (SET ROLE is checked against the session user, here a superuser, so it
-- cannot be tried under SET LOCAL ROLE: membership is what decides it.)
SELECT is(pg_has_role('birdwatch_admin_api', 'birdwatch_audit', 'MEMBER'), false,
    'admin_api is no member of birdwatch_audit, so a login role of AdminAPI cannot SET ROLE birdwatch_audit');

RESET ROLE;

SELECT is(
    (SELECT secret FROM birdwatch.score_secret),
    'admin-api-secret-' || current_setting('bw_test.run'),
    'set_score_secret by admin_api replaced the secret'
);

------------------------------------------------------------------------------
-- Behaviour: birdwatch_audit (nobody's role; the superuser acts as it here)
------------------------------------------------------------------------------

SET LOCAL ROLE birdwatch_audit;

SELECT lives_ok(
    $$SELECT eventstore.append('audit', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'audit'$$,
    'birdwatch_audit can append to audit');
SELECT throws_ok(
    $$SELECT eventstore.append('gdpr', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'gdpr'$$,
    '42501', 'permission denied to append to topic "gdpr"',
    'birdwatch_audit cannot append to gdpr itself (only through TickAPI''s request_erasure)');
SELECT lives_ok($$UPDATE birdwatch.score_secret SET changed_at = now()$$,
    'birdwatch_audit can UPDATE score_secret without reading it');
SELECT throws_ok($$SELECT * FROM birdwatch.score_secret$$, '42501', 'permission denied for table score_secret',
    'birdwatch_audit cannot read score_secret');
SELECT throws_ok($$UPDATE birdwatch.score_secret SET changed_at = now() WHERE secret LIKE 'a%'$$,
    '42501', 'permission denied for table score_secret',
    'birdwatch_audit cannot UPDATE score_secret with a condition on the secret (which would read it)');
SELECT throws_ok($$UPDATE birdwatch.score_secret SET changed_at = now() RETURNING secret$$,
    '42501', 'permission denied for table score_secret',
    'birdwatch_audit cannot UPDATE score_secret RETURNING the secret');
SELECT throws_ok($$SELECT * FROM birdwatch.users$$, '42501', NULL, 'birdwatch_audit cannot read birdwatch.users');
SELECT throws_ok($$SELECT birdwatch.score_image('https://birds.example/x.jpg')$$,
    '42501', NULL, 'birdwatch_audit cannot call score_image (which reads the secret)');

RESET ROLE;

------------------------------------------------------------------------------
-- Behaviour: birdwatch_user_api
------------------------------------------------------------------------------

SET LOCAL ROLE birdwatch_user_api;

SELECT is(
    (SELECT display_name FROM birdwatch.users WHERE id = current_setting('bw_test.alice_id')::uuid),
    'Alice',
    'user_api can read birdwatch.users'
);
SELECT lives_ok($$SELECT count(*) FROM birdwatch.tokens$$, 'user_api can read birdwatch.tokens');
SELECT throws_ok(
    format('SELECT eventstore.append(%L, jsonb_set(%L::jsonb, ''{id}'', to_jsonb(gen_random_uuid())))', topic, env),
    '42501', NULL, format('user_api cannot append to %s', topic))
  FROM bw_test_env ORDER BY topic;
SELECT throws_ok($$SELECT * FROM birdwatch.score_secret$$, '42501', NULL, 'user_api cannot read score_secret');
SELECT throws_ok($$SELECT * FROM birdwatch.ticks$$, '42501', NULL, 'user_api cannot read birdwatch.ticks');

RESET ROLE;

------------------------------------------------------------------------------
-- Behaviour: birdwatch_auth_api
------------------------------------------------------------------------------

SET LOCAL ROLE birdwatch_auth_api;

SELECT throws_ok($$SELECT * FROM birdwatch.users$$, '42501', NULL, 'auth_api cannot read birdwatch.users directly');
SELECT throws_ok($$SELECT * FROM birdwatch.tokens$$, '42501', NULL, 'auth_api cannot read birdwatch.tokens directly');
SELECT is(birdwatch.resolve_token(current_setting('bw_test.bob_token'))::text, current_setting('bw_test.bob_id'),
    'auth_api can call resolve_token: bob''s token stands for bob');
SELECT throws_ok($$SELECT birdwatch.email_address(current_setting('bw_test.alice_id')::uuid)$$,
    '42501', NULL, 'auth_api cannot call email_address');
SELECT throws_ok(
    $$SELECT eventstore.append('tick', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'tick'$$,
    '42501', 'permission denied to append to topic "tick"',
    'auth_api cannot append to tick');

RESET ROLE;

------------------------------------------------------------------------------
-- Behaviour: birdwatch_tick_api
------------------------------------------------------------------------------

SET LOCAL ROLE birdwatch_tick_api;

SELECT throws_ok($$SELECT * FROM birdwatch.users$$, '42501', NULL, 'tick_api cannot read birdwatch.users');
SELECT throws_ok($$SELECT * FROM birdwatch.tokens$$, '42501', NULL, 'tick_api cannot read birdwatch.tokens');
SELECT lives_ok($$SELECT * FROM birdwatch.ticks$$, 'tick_api can read its ticks');
SELECT throws_ok($$SELECT birdwatch.email_address(current_setting('bw_test.alice_id')::uuid)$$,
    '42501', NULL, 'tick_api cannot call email_address');
SELECT throws_ok(
    $$SELECT eventstore.append('user', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'user'$$,
    '42501', 'permission denied to append to topic "user"',
    'tick_api cannot append to user (logins are AuthAPI''s)');
SELECT throws_ok(
    $$SELECT eventstore.append('score', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'score'$$,
    '42501', 'permission denied to append to topic "score"',
    'tick_api cannot append to score');
SELECT throws_ok(
    $$SELECT eventstore.append('audit', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'audit'$$,
    '42501', 'permission denied to append to topic "audit"',
    'tick_api cannot append to audit (eventstore''s per-topic refusal)');

RESET ROLE;

------------------------------------------------------------------------------
-- Behaviour: a fresh login role with no grants can do nothing in birdwatch
------------------------------------------------------------------------------

SET LOCAL ROLE bw_test_nobody;

SELECT throws_ok($$SELECT * FROM birdwatch.register_user('nobody@birds.example', 'Nobody')$$,
    '42501', NULL, 'a role without grants cannot register_user');
SELECT throws_ok($$SELECT birdwatch.login('nobody-token')$$, '42501', NULL, 'a role without grants cannot login');
SELECT throws_ok($$SELECT birdwatch.tick('nobody-token', 'https://birds.example/nobody.jpg')$$,
    '42501', NULL, 'a role without grants cannot tick');
SELECT throws_ok($$SELECT birdwatch.rate('nobody-token', 'https://birds.example/nobody.jpg', 3)$$,
    '42501', NULL, 'a role without grants cannot rate');
SELECT throws_ok($$SELECT birdwatch.forget_me('nobody-token')$$, '42501', NULL, 'a role without grants cannot forget_me');
SELECT is(has_schema_privilege('birdwatch', 'USAGE'), false, 'a role without grants has no USAGE on schema birdwatch');
SELECT throws_ok(
    format('SELECT %s(%s)', p.oid::regproc,
           (SELECT string_agg('(SELECT NULL::' || format_type(t, NULL) || ')', ', ' ORDER BY i)
              FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, i))),
    '42501', NULL,
    format('a role without grants cannot call %s', p.oid::regprocedure))
  FROM pg_proc p
 WHERE p.pronamespace = 'birdwatch'::regnamespace
 ORDER BY p.oid::regprocedure::text;
SELECT throws_ok(format('SELECT * FROM birdwatch.%I', c.relname), '42501', NULL,
    format('a role without grants cannot read birdwatch.%s', c.relname))
  FROM pg_class c
 WHERE c.relnamespace = 'birdwatch'::regnamespace AND c.relkind = 'r'
 ORDER BY c.relname;
SELECT throws_ok(
    $$SELECT eventstore.append('tick', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'tick'$$,
    '42501', NULL, 'a role without grants cannot append');

RESET ROLE;

------------------------------------------------------------------------------
-- Audit: AdminAPI's changes name the acting role
------------------------------------------------------------------------------

SET LOCAL ROLE bw_test_admin;

SELECT lives_ok(
    $$SELECT set_config('bw_test.delete_gdpr_id', birdwatch.delete_user(current_setting('bw_test.bob_id')::uuid)::text, true)$$,
    'a member of admin_api (bw_test_admin) can delete_user');
SELECT lives_ok($$SELECT birdwatch.set_score_secret('bw-test-admin-secret-' || current_setting('bw_test.run'))$$,
    'a member of admin_api (bw_test_admin) can set_score_secret');
SELECT throws_ok($$SELECT * FROM birdwatch.score_secret$$, '42501', NULL,
    'a member of admin_api cannot read score_secret either');
SELECT throws_ok(
    $$SELECT eventstore.append('audit', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'audit'$$,
    '42501', 'permission denied for function append',
    'a member of admin_api cannot append to audit (no EXECUTE on eventstore.append)');
SELECT throws_ok($$SELECT birdwatch.request_erasure(current_setting('bw_test.alice_id')::uuid)$$,
    '42501', 'permission denied for function request_erasure',
    'a member of admin_api cannot call request_erasure directly');
SELECT throws_ok($$SELECT birdwatch.audit('delete', 'user.delete', '{}'::jsonb)$$,
    '42501', 'permission denied for function audit',
    'a member of admin_api cannot call audit directly');
SELECT throws_ok($$UPDATE birdwatch.score_secret SET secret = 'bw-test-admin-direct-secret-0123456789'$$,
    '42501', 'permission denied for table score_secret',
    'a member of admin_api cannot UPDATE score_secret directly');
SELECT is(pg_has_role('bw_test_admin', 'birdwatch_audit', 'MEMBER'), false,
    'a member of admin_api is no member of birdwatch_audit (cannot SET ROLE to it)');

RESET ROLE;

-- eventstore's own per-topic check, the second line: even with EXECUTE on
-- eventstore.append (granted here for the check, and revoked again),
-- neither birdwatch_admin_api nor a member of it may append to audit.
GRANT EXECUTE ON FUNCTION eventstore.append(text, jsonb, text, bigint) TO birdwatch_admin_api;
SET LOCAL ROLE birdwatch_admin_api;
SELECT throws_ok(
    $$SELECT eventstore.append('audit', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'audit'$$,
    '42501', 'permission denied to append to topic "audit"',
    'admin_api, given EXECUTE on eventstore.append, is still refused the audit topic');
SET LOCAL ROLE bw_test_admin;
SELECT throws_ok(
    $$SELECT eventstore.append('audit', jsonb_set(env, '{id}', to_jsonb(gen_random_uuid()))) FROM bw_test_env WHERE topic = 'audit'$$,
    '42501', 'permission denied to append to topic "audit"',
    'a member of admin_api, given EXECUTE on eventstore.append, is still refused the audit topic');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION eventstore.append(text, jsonb, text, bigint) FROM birdwatch_admin_api;
SELECT is(has_function_privilege('birdwatch_admin_api', 'eventstore.append(text,jsonb,text,bigint)', 'EXECUTE'), false,
    'setup: the EXECUTE on eventstore.append granted for the check is revoked again');

-- Without SET ROLE the actor is the login role: the superuser deletes alice.
SELECT lives_ok(
    $$SELECT set_config('bw_test.su_gdpr_id', birdwatch.delete_user(current_setting('bw_test.alice_id')::uuid)::text, true)$$,
    'the login role without SET ROLE (the superuser) can delete_user');

-- the audit events of this test, as the superuser reads them
CREATE TEMP TABLE bw_test_audit AS
SELECT e.* FROM eventstore.read('audit', current_setting('bw_test.pos0')::bigint) e;

SELECT is(
    (SELECT count(*) FROM bw_test_audit
      WHERE envelope #>> '{data,action}' = 'user.delete'
        AND envelope #>> '{data,target,user,id}' = current_setting('bw_test.bob_id')),
    1::bigint,
    'delete_user of bob by bw_test_admin appended exactly one audit event with data.action user.delete'
);
SELECT is(
    (SELECT envelope #>> '{data,actor,role}' FROM bw_test_audit
      WHERE envelope #>> '{data,action}' = 'user.delete'
        AND envelope #>> '{data,target,user,id}' = current_setting('bw_test.bob_id')),
    'bw_test_admin',
    'the user.delete audit event names the acting role: data.actor.role is bw_test_admin'
);
SELECT is(
    (SELECT format('%s %s %s %s', envelope->>'type', envelope->>'version', envelope #>> '{metadata,source}',
                   envelope #>> '{data,target,gdpr_event,id}')
       FROM bw_test_audit
      WHERE envelope #>> '{data,action}' = 'user.delete'
        AND envelope #>> '{data,target,user,id}' = current_setting('bw_test.bob_id')),
    format('delete 1.0 services/AdminAPI %s', current_setting('bw_test.delete_gdpr_id')),
    'the user.delete audit event is delete 1.0 from services/AdminAPI and names the gdpr event'
);
SELECT is(
    (SELECT format('%s %s', e.topic, e.envelope #>> '{data,user,id}')
       FROM eventstore.get(current_setting('bw_test.delete_gdpr_id')::uuid) e),
    format('gdpr %s', current_setting('bw_test.bob_id')),
    'delete_user appended gdpr/delete for bob'
);
SELECT is(
    (SELECT envelope #>> '{data,actor,role}' FROM bw_test_audit
      WHERE envelope #>> '{data,action}' = 'user.delete'
        AND envelope #>> '{data,target,user,id}' = current_setting('bw_test.carol_id')),
    'birdwatch_admin_api',
    'the delete_user of carol under SET ROLE birdwatch_admin_api names birdwatch_admin_api'
);
SELECT is(
    (SELECT envelope #>> '{data,actor,role}' FROM bw_test_audit
      WHERE envelope #>> '{data,action}' = 'user.delete'
        AND envelope #>> '{data,target,user,id}' = current_setting('bw_test.alice_id')),
    session_user::text,
    'the delete_user of alice without SET ROLE names the login role (session_user) as data.actor.role'
);
SELECT is(
    (SELECT array_agg(DISTINCT envelope #>> '{data,actor,session_user}') FROM bw_test_audit
      WHERE envelope #>> '{data,action}' IN ('user.delete', 'score_secret.set')),
    ARRAY[session_user::text],
    'every audit event of delete_user and set_score_secret names the login role as data.actor.session_user'
);
SELECT is(
    (SELECT array_agg(format('%s %s', envelope #>> '{data,action}', envelope #>> '{data,actor,role}')
                      ORDER BY position)
       FROM bw_test_audit WHERE envelope #>> '{data,action}' IN ('user.delete', 'score_secret.set')),
    ARRAY['user.delete birdwatch_admin_api', 'score_secret.set birdwatch_admin_api',
          'user.delete bw_test_admin', 'score_secret.set bw_test_admin', 'user.delete ' || session_user],
    'the user.delete and score_secret.set events of this test are exactly those of its five calls, in order, each naming its actor'
);
SELECT is(
    (SELECT array_agg(envelope #>> '{data,actor,role}' ORDER BY position) FROM bw_test_audit
      WHERE envelope #>> '{data,action}' = 'score_secret.set'),
    ARRAY['birdwatch_admin_api', 'bw_test_admin'],
    'each set_score_secret appended one audit event score_secret.set naming its acting role'
);
SELECT is(
    (SELECT count(*) FROM bw_test_audit
      WHERE strpos(envelope::text, 'admin-secret-' || current_setting('bw_test.run')) > 0
         OR strpos(envelope::text, 'admin-api-secret-' || current_setting('bw_test.run')) > 0),
    0::bigint,
    'no audit event contains a secret given to set_score_secret'
);
SELECT is(
    (SELECT count(*) FROM eventstore.events e
      WHERE e.position > current_setting('bw_test.pos0')::bigint
        AND strpos(e.data::text || e.metadata::text, 'secret-' || current_setting('bw_test.run')) > 0),
    0::bigint,
    'no event of this test, of any topic, contains a score secret'
);
SELECT is(
    (SELECT secret FROM birdwatch.score_secret),
    'bw-test-admin-secret-' || current_setting('bw_test.run'),
    'set_score_secret by bw_test_admin replaced the secret'
);

SELECT * FROM finish();
ROLLBACK;
