-- eventstore 1.0 -> 1.1: what 1.1 changes in the SQL objects against 1.0.
--
-- A fresh CREATE EXTENSION eventstore runs eventstore--1.1.sql, which make builds
-- from the current source, sql/eventstore/*.sql; an installation of 1.0 runs
-- this script instead.  Whatever changes in sql/eventstore/ for 1.1 changes
-- here too, as the statements that take a 1.0 installation there
-- (CREATE OR REPLACE, ALTER, new objects, their grants and comments), and
-- test/shell/upgrade.sh checks that both end up the same, object for object.
-- Once 1.1 is released this script is never edited again: later changes
-- go into eventstore--1.1--<next>.sql.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '1.1'" to load this file. \quit

------------------------------------------------------------------------------
-- One consumer engine: outside consumers (poll, ack, nack) now go through
-- the same C implementation as in-database ones (extension/consumer_engine.c)
-- for locking a consumer, its snapshot windows, batches and leases, retries,
-- parking and the replay of parked events.  The PL/pgSQL copy of that
-- protocol goes; lock_consumer(), which drop_consumer(), reset_consumer()
-- and replay_parked() call, is now the engine's lock.
------------------------------------------------------------------------------

DROP FUNCTION poll_batch(text, integer);
DROP FUNCTION ack_batch(text, bigint);
DROP FUNCTION nack_batch(text, bigint, text);
DROP FUNCTION lock_batch(text, bigint);
DROP FUNCTION batch_deliveries(text);
DROP FUNCTION park_batch(text, text);
DROP FUNCTION finish_batch(text, boolean);
DROP FUNCTION window_events(text, bigint, integer);
DROP FUNCTION open_window(text);
DROP FUNCTION close_window(text);
DROP FUNCTION lease_timeout();
DROP FUNCTION retry_delay(integer);

DROP FUNCTION lock_consumer(text, text);
CREATE FUNCTION lock_consumer(consumer text, kind text DEFAULT NULL) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_lock_consumer';
REVOKE ALL ON FUNCTION lock_consumer(text, text) FROM PUBLIC;
