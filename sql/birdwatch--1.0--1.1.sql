-- birdwatch 1.0 -> 1.1: what 1.1 changes in the SQL objects against 1.0.
--
-- A fresh CREATE EXTENSION birdwatch runs birdwatch--1.1.sql, which make builds
-- from the current source, sql/birdwatch/*.sql; an installation of 1.0 runs
-- this script instead.  Whatever changes in sql/birdwatch/ for 1.1 changes
-- here too, as the statements that take a 1.0 installation there
-- (CREATE OR REPLACE, ALTER, new objects, their grants and comments), and
-- test/shell/upgrade.sh checks that both end up the same, object for object.
-- Once 1.1 is released this script is never edited again: later changes
-- go into birdwatch--1.1--<next>.sql.
--
-- So far 1.1 changes nothing: this script holds no statement.

\echo Use "ALTER EXTENSION birdwatch UPDATE TO '1.1'" to load this file. \quit
