-- sql/birdwatch/10_roles.sql: the roles of birdwatch's services.  Their
-- functions are owned in each service's file, their privileges granted in
-- 90_grants.sql.

/*
 * Every service of docs/events.md is a role, and each service's functions are
 * owned by its role: a SECURITY DEFINER function then acts with exactly the
 * privileges of its service, never with those of the extension's owner.
 *
 *   birdwatch_app           the client: register_user, login, tick, rate, forget_me
 *   birdwatch_tick_api      appends tick, rate, gdpr; keeps the ticks store;
 *                           reads rate (the rate upcaster runs as it)
 *   birdwatch_auth_api      appends user (login); resolves tokens through UserAPI
 *   birdwatch_user_api      the only holder of personal data; consumes gdpr
 *   birdwatch_score_model   consumes tick, appends score; reads its secret
 *   birdwatch_notifier      consumes rate, appends notification; the outbox
 *   birdwatch_statistics    consumes every topic; aggregates, no personal data
 *   birdwatch_admin_api     overview, user management (for the people who run it)
 *   birdwatch_audit         owns the AdminAPI calls that change something:
 *                           appends audit, asks for erasure, sets the score
 *                           secret; granted to nobody, so that every such
 *                           change goes through a call that records it
 *   birdwatch_export        reads the events about one person, for the
 *                           right of access; granted to nobody
 *
 * Tables are owned by the extension's owner and granted table by table.
 * Nothing is granted to PUBLIC.
 */

DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['birdwatch_app', 'birdwatch_tick_api', 'birdwatch_auth_api',
                             'birdwatch_user_api', 'birdwatch_score_model',
                             'birdwatch_notifier', 'birdwatch_statistics',
                             'birdwatch_admin_api', 'birdwatch_audit', 'birdwatch_export']
    LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;
