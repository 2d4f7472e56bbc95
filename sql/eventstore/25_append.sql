-- sql/eventstore/25_append.sql: validating and appending events
-- (extension/append.c, extension/envelope.c), and the id of an event
-- derived from another.

CREATE FUNCTION validate(event jsonb) RETURNS void
    LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'eventstore_validate';
COMMENT ON FUNCTION validate(jsonb) IS
    'raise 22023 with a detail naming the field when the event envelope is invalid';

CREATE FUNCTION is_valid(event jsonb) RETURNS boolean
    LANGUAGE c STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'eventstore_is_valid';
COMMENT ON FUNCTION is_valid(jsonb) IS 'whether the event envelope is valid';

CREATE FUNCTION append(topic text, event jsonb,
                       stream text DEFAULT NULL,
                       expected_version bigint DEFAULT NULL)
RETURNS bigint
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_append';
COMMENT ON FUNCTION append(text, jsonb, text, bigint) IS
    'validate and store one event; returns its position (the original one for a duplicate id)';

CREATE FUNCTION append_batch(topic text, events jsonb[],
                             stream text DEFAULT NULL,
                             expected_version bigint DEFAULT NULL)
RETURNS SETOF bigint
    LANGUAGE c ROWS 100 AS 'MODULE_PATHNAME', 'eventstore_append_batch';
COMMENT ON FUNCTION append_batch(text, jsonb[], text, bigint) IS
    'validate and store events all or nothing; one position per event, in input order';

CREATE FUNCTION derived_id(source_id uuid, consumer text) RETURNS uuid
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'eventstore_derived_id';
COMMENT ON FUNCTION derived_id(uuid, text) IS
    'UUID v5 of the consumer name in the namespace of the source event id: the id of an event derived from it';
