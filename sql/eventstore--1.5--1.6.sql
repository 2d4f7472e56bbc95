-- eventstore 1.5 -> 1.6: what 1.6 changes in the SQL objects against 1.5.
--
-- A fresh CREATE EXTENSION eventstore runs eventstore--1.6.sql, which make
-- builds from the current source, sql/eventstore/*.sql; an installation of
-- 1.5 runs this script instead, and test/shell/upgrade.sh checks that both
-- end up the same, object for object.  Once 1.6 is released this script is
-- never edited again: later changes go into eventstore--1.6--<next>.sql.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '1.6'" to load this file. \quit

------------------------------------------------------------------------------
-- the inbox: imports by COPY (sql/eventstore/25_append.sql)
------------------------------------------------------------------------------

-- The inbox: the way in for imports.  A view of (topic, stream, envelope)
-- that holds nothing: its triggers (extension/inbox.c) append the rows
-- inserted into it, by COPY or INSERT, checked like append_batch's events,
-- in input order, all or nothing per statement, duplicates discarded.
--   COPY eventstore.inbox (topic, envelope) FROM STDIN
CREATE VIEW inbox AS
SELECT NULL::text COLLATE "C" AS topic,
       NULL::text COLLATE "C" AS stream,
       NULL::jsonb AS envelope
 WHERE false;
COMMENT ON VIEW inbox IS
    'insert or COPY (topic, stream, envelope) rows to append them, all or nothing per statement; always empty';

CREATE FUNCTION inbox_begin() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_inbox_begin';
CREATE FUNCTION inbox_row() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_inbox_row';
CREATE FUNCTION inbox_end() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_inbox_end';
COMMENT ON FUNCTION inbox_row() IS
    'trigger: check an inbox row''s envelope and keep it to be appended with its neighbours';
CREATE TRIGGER inbox_begin BEFORE INSERT ON inbox
    FOR EACH STATEMENT EXECUTE FUNCTION inbox_begin();
CREATE TRIGGER inbox_row INSTEAD OF INSERT ON inbox
    FOR EACH ROW EXECUTE FUNCTION inbox_row();
CREATE TRIGGER inbox_end AFTER INSERT ON inbox
    FOR EACH STATEMENT EXECUTE FUNCTION inbox_end();

-- They fire whatever session_replication_role says: with "replica" (which
-- some bulk loaders set to skip foreign keys) an ordinary trigger does not
-- fire, and a row inserted into the inbox would silently vanish.  ALTER
-- TABLE ... ENABLE ALWAYS TRIGGER does not take views, so the catalog is set
-- here as that command sets it, on the triggers just created.
UPDATE pg_catalog.pg_trigger SET tgenabled = 'A'
 WHERE tgrelid = 'eventstore.inbox'::pg_catalog.regclass;

REVOKE ALL ON FUNCTION inbox_begin(), inbox_row(), inbox_end() FROM PUBLIC;
GRANT INSERT ON inbox TO eventstore_writer;

-- Roles granted append on a topic before 1.6 get the inbox as grant_topic
-- now gives it.
DO $$
DECLARE
    r regrole;
BEGIN
    FOR r IN SELECT DISTINCT a FROM eventstore.topics t, unnest(t.appenders) AS a LOOP
        EXECUTE format('GRANT INSERT ON eventstore.inbox TO %s', r::text);
    END LOOP;
END
$$;

------------------------------------------------------------------------------
-- grant_topic and revoke_topic give and take the inbox with 'append'
-- (sql/eventstore/20_topics.sql)
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION grant_topic(topic text, privilege text, grantee regrole) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.check_topic_grant_args(topic, privilege, grantee);
    EXECUTE format('UPDATE eventstore.topics t SET %1$I = array_append(t.%1$I, $1)'
                   ' WHERE t.name = $2 AND NOT $1 = ANY (t.%1$I)',
                   eventstore.topic_privilege_column(privilege))
        USING grantee, topic;
    EXECUTE format('GRANT USAGE ON SCHEMA eventstore TO %s', grantee::text);
    EXECUTE format('GRANT USAGE ON TYPE eventstore.event, eventstore.delivery TO %s', grantee::text);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s',
                   eventstore.topic_privilege_functions(privilege), grantee::text);
    -- The view of streams shows a role the streams of the topics it may
    -- read, and only those.
    IF privilege = 'read' THEN
        EXECUTE format('GRANT SELECT ON eventstore.streams TO %s', grantee::text);
    END IF;
    -- The inbox checks each row's topic as append does.
    IF privilege = 'append' THEN
        EXECUTE format('GRANT INSERT ON eventstore.inbox TO %s', grantee::text);
    END IF;
EXCEPTION
    WHEN check_violation THEN
        RAISE EXCEPTION 'too many grantees of % on topic "%"', privilege, topic
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = 'A topic has at most 16 grantees per privilege.',
                  HINT = 'Grant the privilege to a group role and make the roles its members.';
END
$$;

CREATE OR REPLACE FUNCTION revoke_topic(topic text, privilege text, grantee regrole) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed integer;
    held    text[];
    p       text;
BEGIN
    PERFORM eventstore.check_topic_grant_args(topic, privilege, grantee);
    EXECUTE format('UPDATE eventstore.topics t SET %1$I = array_remove(t.%1$I, $1)'
                   ' WHERE t.name = $2 AND $1 = ANY (t.%1$I)',
                   eventstore.topic_privilege_column(privilege))
        USING grantee, topic;
    GET DIAGNOSTICS removed = ROW_COUNT;
    IF removed = 0 THEN
        RETURN;
    END IF;
    -- The functions go with the role's last grant of the privilege; some
    -- (derived_id) come with several privileges, so those the role still
    -- holds are granted again.
    held := eventstore.topic_privileges_of(grantee);
    IF privilege = ANY (held) THEN
        RETURN;
    END IF;
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM %s',
                   eventstore.topic_privilege_functions(privilege), grantee::text);
    IF privilege = 'read' THEN
        EXECUTE format('REVOKE SELECT ON eventstore.streams FROM %s', grantee::text);
    END IF;
    IF privilege = 'append' THEN
        EXECUTE format('REVOKE INSERT ON eventstore.inbox FROM %s', grantee::text);
    END IF;
    FOREACH p IN ARRAY held LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s',
                       eventstore.topic_privilege_functions(p), grantee::text);
    END LOOP;
    IF cardinality(held) = 0 THEN
        EXECUTE format('REVOKE USAGE ON TYPE eventstore.event, eventstore.delivery FROM %s',
                       grantee::text);
        EXECUTE format('REVOKE USAGE ON SCHEMA eventstore FROM %s', grantee::text);
    END IF;
END
$$;

------------------------------------------------------------------------------
-- whether a role may consume topics: checked in C from the topic cache
-- (sql/eventstore/20_topics.sql)
------------------------------------------------------------------------------

-- The first of topics that role may not consume, or NULL when it may
-- consume them all: it may if it has the privileges of eventstore_reader or
-- of a role granted read on the topic (extension/catalog.c, from the topic
-- cache: a consumer checks this on every batch).
CREATE OR REPLACE FUNCTION unreadable_topic(role oid, topics text[]) RETURNS text
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'eventstore_unreadable_topic';

-- Raises 42501 naming the first topic role may not consume; what says who
-- the role is ("the consumer's role").
CREATE OR REPLACE FUNCTION check_topics_readable(role oid, topics text[], what text) RETURNS void
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'eventstore_check_topics_readable';
