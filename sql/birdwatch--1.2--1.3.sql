-- birdwatch 1.2 -> 1.3: what 1.3 changes against 1.2.
--
-- A fresh CREATE EXTENSION birdwatch runs birdwatch--1.3.sql, which make builds
-- from the current source, sql/birdwatch/*.sql; an installation of 1.2 runs
-- this script instead, and test/shell/upgrade.sh checks that both end up
-- the same, object for object.  Once 1.3 is released this script is never
-- edited again: later changes go into birdwatch--1.3--<next>.sql.

\echo Use "ALTER EXTENSION birdwatch UPDATE TO '1.3'" to load this file. \quit

------------------------------------------------------------------------------
-- Consumer members (eventstore 1.3): the Notifier is spread over 4 members,
-- as a fresh installation creates it (sql/birdwatch/70_consumers.sql;
-- BIRDWATCH.md, "Consumers and their members").  No SQL object changes:
-- the handlers are the same, the consumers are eventstore's rows.
------------------------------------------------------------------------------

-- eventstore first: its 1.3 has the members (README, "Versions and
-- upgrades": ALTER EXTENSION eventstore UPDATE, then birdwatch).
DO $check$
BEGIN
    IF pg_catalog.to_regprocedure('eventstore.set_consumer_members(text, integer)') IS NULL THEN
        RAISE EXCEPTION 'birdwatch 1.3 needs eventstore 1.3 or later'
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('eventstore is at version %s, without consumer members.',
                                  (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'eventstore')),
                  HINT = 'Run ALTER EXTENSION eventstore UPDATE first.';
    END IF;
END
$check$;

-- The change waits for a batch in flight and loses or repeats nothing
-- (eventstore's set_consumer_members).  A count someone chose already (not
-- the 1 every consumer had before eventstore 1.3) is kept.
SELECT eventstore.set_consumer_members(c.name, 4)
  FROM eventstore.consumers c
 WHERE c.name = 'birdwatch_notifier' AND c.members = 1;
