-- sql/eventstore/10_roles.sql: the roles of the store.
--
--   eventstore_writer   may append to every topic
--   eventstore_reader   may read and consume every topic
--   eventstore_admin    creates topics, consumers and upcasters, grants
--                       per-topic privileges, erases streams
--   eventstore_decrypt  reads protected fields in plain text (unprotect)
--
-- What each role may call is granted in 90_grants.sql.

-- Roles are cluster-wide: create them only where they do not exist yet, so
-- that the extension can be created in several databases or re-created.
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin',
                              'eventstore_decrypt']
    LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;
