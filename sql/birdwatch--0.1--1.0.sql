-- birdwatch 0.1 -> 1.0: the first release.
--
-- 0.1 is the development series as it stood before the release work
-- (issue 6); this script holds what that work changed in the SQL objects.
-- A fresh CREATE EXTENSION birdwatch runs birdwatch--0.1.sql and then this script,
-- so every installation, new or upgraded, goes through the same steps.
-- From 1.0 on, every change to the SQL ships as a further upgrade script
-- (1.0--1.1 and so on), never as an edit of an earlier one.

\echo Use "ALTER EXTENSION birdwatch UPDATE TO '1.0'" to load this file. \quit
