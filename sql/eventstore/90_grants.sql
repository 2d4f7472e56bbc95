-- sql/eventstore/90_grants.sql: privileges.  Nothing for PUBLIC; each role
-- gets exactly its functions.  Runs last, after every object exists.

REVOKE ALL ON ALL TABLES IN SCHEMA eventstore FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA eventstore FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA eventstore FROM PUBLIC;
REVOKE ALL ON TYPE event, delivery FROM PUBLIC;
REVOKE ALL ON SCHEMA eventstore FROM PUBLIC;

GRANT USAGE ON SCHEMA eventstore
    TO eventstore_writer, eventstore_reader, eventstore_admin;
GRANT USAGE ON TYPE event TO eventstore_writer, eventstore_reader, eventstore_admin;
GRANT EXECUTE ON FUNCTION validate(jsonb), is_valid(jsonb)
    TO eventstore_writer, eventstore_reader, eventstore_admin;
GRANT EXECUTE ON FUNCTION append(text, jsonb, text, bigint),
                          append_batch(text, jsonb[], text, bigint)
    TO eventstore_writer;
GRANT INSERT ON inbox TO eventstore_writer;
GRANT EXECUTE ON FUNCTION read(text, bigint, integer, text[]),
                          read_stream(text, text, bigint, integer, boolean),
                          get(uuid),
                          stream_version(text, text), last_event(text, text),
                          load_snapshot(text, text, bigint), safe_position(),
                          read_correlated(uuid)
    TO eventstore_reader;
GRANT SELECT ON streams TO eventstore_reader, eventstore_admin;
GRANT EXECUTE ON FUNCTION close_stream(text, text) TO eventstore_writer, eventstore_admin;
GRANT EXECUTE ON FUNCTION save_snapshot(text, text, bigint, jsonb) TO eventstore_writer;
GRANT EXECUTE ON FUNCTION create_topic(text, text, interval),
                          set_retention(text, interval), purge_expired(), publish_archive(),
                          set_cleanup_retention(text, interval), set_derived_id_key(),
                          erase_stream(text, text), truncate_stream(text, text, bigint),
                          set_stream_max_count(text, text, bigint),
                          grant_topic(text, text, regrole), revoke_topic(text, text, regrole)
    TO eventstore_admin;
GRANT SELECT ON topics TO eventstore_reader, eventstore_writer, eventstore_admin;
GRANT SELECT ON retention_cleanups TO eventstore_admin;

GRANT USAGE ON TYPE delivery TO eventstore_reader, eventstore_admin;
GRANT EXECUTE ON FUNCTION poll(text, integer, integer), ack(text, bigint), nack(text, bigint, text),
                          upcast(event)
    TO eventstore_reader;
GRANT EXECUTE ON FUNCTION derived_id(uuid, text)
    TO eventstore_writer, eventstore_reader, eventstore_admin;
GRANT EXECUTE ON FUNCTION create_consumer(text, text[], regprocedure, integer, integer, regrole, text[], integer),
                          drop_consumer(text), reset_consumer(text, bigint),
                          set_consumer_members(text, integer),
                          run_consumer(text, integer), replay_parked(text, uuid),
                          create_upcaster(text, integer, integer, regprocedure),
                          set_topic_version(text, text)
    TO eventstore_admin;
GRANT EXECUTE ON FUNCTION undelivered(text), member_status(text, integer, integer)
    TO eventstore_reader, eventstore_admin;
GRANT EXECUTE ON FUNCTION unprotect(event) TO eventstore_reader;
GRANT EXECUTE ON FUNCTION protect_fields(text, text, text[]), forget_subject(text)
    TO eventstore_admin;
GRANT SELECT ON protections TO eventstore_reader, eventstore_writer, eventstore_admin;
GRANT SELECT ON consumer_status, consumer_members, parked, upcasters TO eventstore_reader, eventstore_admin;
GRANT USAGE ON SCHEMA eventstore TO pg_monitor;
GRANT SELECT ON stats, stats_refused TO eventstore_reader, eventstore_admin, pg_monitor;
GRANT EXECUTE ON FUNCTION stats_counters() TO eventstore_reader, eventstore_admin, pg_monitor;
GRANT EXECUTE ON FUNCTION stats_reset() TO eventstore_admin;
