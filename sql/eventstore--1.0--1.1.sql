-- eventstore 1.0 -> 1.1
--
-- One consumer engine: outside consumers (poll, ack, nack) now go through
-- the same C implementation as in-database ones (extension/consumer_engine.c)
-- for locking a consumer, its snapshot windows, batches and leases, retries,
-- parking and the replay of parked events.  The PL/pgSQL copy of that
-- protocol goes; lock_consumer(), which drop_consumer(), reset_consumer()
-- and replay_parked() call, is now the engine's lock.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '1.1'" to load this file. \quit

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
-- The consumer's row, locked for the rest of the transaction; kind
-- 'outside' or 'in_database' refuses the other kind.
CREATE FUNCTION lock_consumer(consumer text, kind text DEFAULT NULL) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_lock_consumer';
REVOKE ALL ON FUNCTION lock_consumer(text, text) FROM PUBLIC;
