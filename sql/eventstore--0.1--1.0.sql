-- eventstore 0.1 -> 1.0: the first release.
--
-- 0.1 is the development series as it stood before the release work
-- (issue 6); this script holds what that work changed in the SQL objects.
-- A fresh CREATE EXTENSION eventstore runs eventstore--0.1.sql and then this script,
-- so every installation, new or upgraded, goes through the same steps.
-- From 1.0 on, every change to the SQL ships as a further upgrade script
-- (1.0--1.1 and so on), never as an edit of an earlier one.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '1.0'" to load this file. \quit

------------------------------------------------------------------------------
-- pg_dump: the stored events belong in a dump.
--
-- 0.1 left every table out of pg_dump (extension tables are, unless marked),
-- so a logical backup silently held no events.  The tables that only
-- appends write are marked, with the identity sequences that number them:
-- a restored store goes on at the next position and its encrypted fields
-- stay readable.  The tables that scripts fill (topics and their grants,
-- consumers, upcasters, protections) are left to the scripts that created
-- them, so that a restore never collides with rows an extension script
-- such as birdwatch's creates again; README "Backups" says what to re-run.
------------------------------------------------------------------------------

-- One call per statement: each call rewrites the extension's catalog row.
SELECT pg_catalog.pg_extension_config_dump('events', '');
SELECT pg_catalog.pg_extension_config_dump('events_position_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streams', '');
SELECT pg_catalog.pg_extension_config_dump('subject_keys', '');
SELECT pg_catalog.pg_extension_config_dump('subject_keys_key_id_seq', '');
-- End of: pg_dump.
