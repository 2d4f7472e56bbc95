-- test/pgtap/envelope.sql: the event envelope of docs/events.md as
-- eventstore.validate, eventstore.is_valid, append and append_batch check it.
--
-- Invalid envelopes are table-driven (cases below): each must raise SQLSTATE
-- 22023, errmsg "invalid event envelope" and exactly the detail listed.
BEGIN;
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
RESET client_min_messages;

------------------------------------------------------------------------------
-- Helpers
------------------------------------------------------------------------------

-- A valid envelope (the tick event of docs/events.md).
CREATE FUNCTION pg_temp.b() RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT '{"id": "123e4567-e89b-12d3-a456-426614174000",
             "type": "new",
             "version": "1.0",
             "data": {"user": {"id": "8a1f4c2e-5b6d-4e7f-9a0b-1c2d3e4f5a6b"},
                      "image": {"url": "https://example.org/bird.jpg"}},
             "metadata": {"source": "services/TickAPI",
                          "time": "1985-04-12T23:20:50Z"}}'::jsonb
$$;

-- The valid envelope with one member replaced, or removed.
CREATE FUNCTION pg_temp.b(path text[], val jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_set(pg_temp.b(), path, val)
$$;
CREATE FUNCTION pg_temp.without(path text[]) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT pg_temp.b() #- path
$$;
-- The valid envelope with metadata.time replaced.
CREATE FUNCTION pg_temp.t(val text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_set(pg_temp.b(), '{metadata,time}', to_jsonb(val))
$$;

-- "SQLSTATE: message / detail" of the error a statement raises, or "no error".
CREATE FUNCTION pg_temp.err_of(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; det text;
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN st || ': ' || msg || ' / ' || coalesce(det, '<no detail>');
END
$$;

-- The error eventstore.validate raises for a document, or "no error".
CREATE FUNCTION pg_temp.verr(doc jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; det text;
BEGIN
    PERFORM eventstore.validate(doc);
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN st || ': ' || msg || ' / ' || coalesce(det, '<no detail>');
END
$$;

------------------------------------------------------------------------------
-- Invalid envelopes: description, document, expected errdetail
------------------------------------------------------------------------------

CREATE TEMP TABLE bad (n serial, descr text, doc jsonb, detail text);

-- Not an object
INSERT INTO bad (descr, doc, detail) VALUES
('array',            '[]',                 'The event must be a JSON object, not an array.'),
('array of the envelope', jsonb_build_array(pg_temp.b()), 'The event must be a JSON object, not an array.'),
('string',           '"event"',            'The event must be a JSON object, not a string.'),
('number',           '42',                 'The event must be a JSON object, not a number.'),
('JSON null',        'null',               'The event must be a JSON object, not null.'),
('boolean',          'true',               'The event must be a JSON object, not a boolean.'),
('empty object',     '{}',                 'Field "id" is missing.');

-- Members missing
INSERT INTO bad (descr, doc, detail) VALUES
('id missing',       pg_temp.without('{id}'),       'Field "id" is missing.'),
('type missing',     pg_temp.without('{type}'),     'Field "type" is missing.'),
('version missing',  pg_temp.without('{version}'),  'Field "version" is missing.'),
('data missing',     pg_temp.without('{data}'),     'Field "data" is missing.'),
('metadata missing', pg_temp.without('{metadata}'), 'Field "metadata" is missing.');

-- Members of the wrong JSON type
INSERT INTO bad (descr, doc, detail) VALUES
('id a number',        pg_temp.b('{id}', '123'),             'Field "id" must be a string, not a number.'),
('id null',            pg_temp.b('{id}', 'null'),            'Field "id" must be a string, not null.'),
('id an object',       pg_temp.b('{id}', '{"uuid": "123e4567-e89b-12d3-a456-426614174000"}'), 'Field "id" must be a string, not an object.'),
('id an array',        pg_temp.b('{id}', '["123e4567-e89b-12d3-a456-426614174000"]'), 'Field "id" must be a string, not an array.'),
('type a boolean',     pg_temp.b('{type}', 'false'),         'Field "type" must be a string, not a boolean.'),
('type null',          pg_temp.b('{type}', 'null'),          'Field "type" must be a string, not null.'),
('type an array',      pg_temp.b('{type}', '["new"]'),       'Field "type" must be a string, not an array.'),
('version a number',   pg_temp.b('{version}', '1.0'),        'Field "version" must be a string, not a number.'),
('version an object',  pg_temp.b('{version}', '{"major": 1, "minor": 0}'), 'Field "version" must be a string, not an object.'),
('data an array',      pg_temp.b('{data}', '[]'),            'Field "data" must be an object, not an array.'),
('data a string',      pg_temp.b('{data}', '"{}"'),          'Field "data" must be an object, not a string.'),
('data null',          pg_temp.b('{data}', 'null'),          'Field "data" must be an object, not null.'),
('data a number',      pg_temp.b('{data}', '0'),             'Field "data" must be an object, not a number.'),
('metadata an array',  pg_temp.b('{metadata}', '[{"source": "services/TickAPI", "time": "1985-04-12T23:20:50Z"}]'), 'Field "metadata" must be an object, not an array.'),
('metadata a string',  pg_temp.b('{metadata}', '"services/TickAPI"'), 'Field "metadata" must be an object, not a string.'),
('metadata null',      pg_temp.b('{metadata}', 'null'),      'Field "metadata" must be an object, not null.');

-- id not a UUID
INSERT INTO bad (descr, doc, detail)
SELECT 'id ' || d, pg_temp.b('{id}', to_jsonb(v)),
       'Field "id" must be a UUID such as "123e4567-e89b-12d3-a456-426614174000".'
  FROM (VALUES
    ('too short',      '123e4567-e89b-12d3-a456-42661417400'),
    ('too long',       '123e4567-e89b-12d3-a456-4266141740000'),
    ('bad hex',        '123e4567-e89b-12d3-a456-42661417400g'),
    ('in braces',      '{123e4567-e89b-12d3-a456-426614174000}'),
    ('without hyphens', '123e4567e89b12d3a456426614174000'),
    ('hyphens moved',  '123e456-7e89b-12d3-a456-426614174000'),
    ('trailing space', '123e4567-e89b-12d3-a456-426614174000 '),
    ('leading space',  ' 123e4567-e89b-12d3-a456-42661417400'),
    ('urn prefix',     'urn:uuid:123e4567-e89b-12d3-a456-426614174000'),
    ('empty',          ''),
    ('full-width digit', '123e4567-e89b-12d3-a456-42661417400１')
  ) AS x(d, v);

-- type
INSERT INTO bad (descr, doc, detail) VALUES
('type empty', pg_temp.b('{type}', '""'), 'Field "type" must not be empty.');

-- version forms
INSERT INTO bad (descr, doc, detail)
SELECT format('version %s', to_jsonb(v)), pg_temp.b('{version}', to_jsonb(v)),
       'Field "version" must be "MAJOR.MINOR" of non-negative integers up to 2147483647, without signs, spaces or leading zeros.'
  FROM unnest(ARRAY['1', '1.', '.1', '01.0', '1.01', '00.0', '+1.0', '-1.0', ' 1.0', '1.0 ',
                    '1.0.0', '1.x', '2147483648.0', '1.2147483648', '99999999999999999999.0',
                    '', '.', '1,0', '1.0-beta', 'v1.0', '١.٠']) AS v;

-- metadata.source
INSERT INTO bad (descr, doc, detail) VALUES
('metadata.source missing',  pg_temp.without('{metadata,source}'),             'Field "metadata.source" is missing.'),
('metadata.source a number', pg_temp.b('{metadata,source}', '7'),              'Field "metadata.source" must be a string, not a number.'),
('metadata.source an object', pg_temp.b('{metadata,source}', '{"name": "services/TickAPI"}'), 'Field "metadata.source" must be a string, not an object.'),
('metadata.source null',     pg_temp.b('{metadata,source}', 'null'),           'Field "metadata.source" must be a string, not null.'),
('metadata.source empty',    pg_temp.b('{metadata,source}', '""'),             'Field "metadata.source" must not be empty.');

-- metadata.time
INSERT INTO bad (descr, doc, detail) VALUES
('metadata.time missing',    pg_temp.without('{metadata,time}'),               'Field "metadata.time" is missing.'),
('metadata.time a number',   pg_temp.b('{metadata,time}', '482196050'),        'Field "metadata.time" must be a string, not a number.'),
('metadata.time a boolean',  pg_temp.b('{metadata,time}', 'true'),             'Field "metadata.time" must be a string, not a boolean.'),
('metadata.time null',       pg_temp.b('{metadata,time}', 'null'),             'Field "metadata.time" must be a string, not null.');

-- metadata.correlation_id and metadata.causation_id: UUIDs when present
INSERT INTO bad (descr, doc, detail) VALUES
('metadata.correlation_id not a UUID', pg_temp.b('{metadata,correlation_id}', '"story-1"'),
 'Field "metadata.correlation_id" must be a UUID such as "123e4567-e89b-12d3-a456-426614174000".'),
('metadata.correlation_id in braces', pg_temp.b('{metadata,correlation_id}', '"{123e4567-e89b-12d3-a456-426614174000}"'),
 'Field "metadata.correlation_id" must be a UUID such as "123e4567-e89b-12d3-a456-426614174000".'),
('metadata.correlation_id null', pg_temp.b('{metadata,correlation_id}', 'null'),
 'Field "metadata.correlation_id" must be a string, not null.'),
('metadata.causation_id a number', pg_temp.b('{metadata,causation_id}', '7'),
 'Field "metadata.causation_id" must be a string, not a number.'),
('metadata.causation_id too short', pg_temp.b('{metadata,causation_id}', '"123e4567-e89b-12d3-a456-42661417400"'),
 'Field "metadata.causation_id" must be a UUID such as "123e4567-e89b-12d3-a456-426614174000".');

INSERT INTO bad (descr, doc, detail)
SELECT format('metadata.time %s (%s)', to_jsonb(v), d), pg_temp.t(v),
       'Field "metadata.time" must be an RFC 3339 date-time: ' || why || '.'
  FROM (VALUES
    ('now',           'now',                         'the date is not YYYY-MM-DD'),
    ('epoch',         'epoch',                       'the date is not YYYY-MM-DD'),
    ('yesterday',     'yesterday',                   'the date is not YYYY-MM-DD'),
    ('empty',         '',                            'the date is not YYYY-MM-DD'),
    ('two-digit year', '85-04-12T23:20:50Z',         'the date is not YYYY-MM-DD'),
    ('one-digit month', '1985-4-12T23:20:50Z',       'the date is not YYYY-MM-DD'),
    ('slashes',       '1985/04/12T23:20:50Z',        'the date is not YYYY-MM-DD'),
    ('leading space', ' 1985-04-12T23:20:50Z',       'the date is not YYYY-MM-DD'),
    ('date only',     '1985-04-12',                  'the date must be followed by "T" and the time'),
    ('space for T',   '1985-04-12 23:20:50Z',        'the date must be followed by "T" and the time'),
    ('underscore for T', '1985-04-12_23:20:50Z',     'the date must be followed by "T" and the time'),
    ('no seconds',    '1985-04-12T23:20Z',           'the time is not hh:mm:ss'),
    ('one-digit hour', '1985-04-12T3:20:50Z',        'the time is not hh:mm:ss'),
    ('T only',        '1985-04-12T',                 'the time is not hh:mm:ss'),
    ('missing offset', '1985-04-12T23:20:50',        'the time offset ("Z", "+hh:mm" or "-hh:mm") is missing'),
    ('fraction, missing offset', '1985-04-12T23:20:50.52', 'the time offset ("Z", "+hh:mm" or "-hh:mm") is missing'),
    ('named zone',    '1985-04-12T23:20:50 UTC',     'the time offset ("Z", "+hh:mm" or "-hh:mm") is missing'),
    ('offset +2:00',  '1985-04-12T23:20:50+2:00',    'the offset is not +hh:mm or -hh:mm'),
    ('offset +0200',  '1985-04-12T23:20:50+0200',    'the offset is not +hh:mm or -hh:mm'),
    ('offset +02',    '1985-04-12T23:20:50+02',      'the offset is not +hh:mm or -hh:mm'),
    ('offset +24:00', '1985-04-12T23:20:50+24:00',   'the offset 24:00 does not exist'),
    ('offset -05:60', '1985-04-12T23:20:50-05:60',   'the offset 05:60 does not exist'),
    ('month 13',      '1985-13-12T23:20:50Z',        'month 13 does not exist'),
    ('month 00',      '1985-00-12T23:20:50Z',        'month 00 does not exist'),
    ('day 00',        '1985-04-00T23:20:50Z',        'day 00 does not exist in 1985-04'),
    ('April 31',      '1985-04-31T23:20:50Z',        'day 31 does not exist in 1985-04'),
    ('February 30',   '2026-02-30T00:00:00Z',        'day 30 does not exist in 2026-02'),
    ('2023-02-29, not a leap year', '2023-02-29T12:00:00Z', 'day 29 does not exist in 2023-02'),
    ('1900-02-29, century not a leap year', '1900-02-29T12:00:00Z', 'day 29 does not exist in 1900-02'),
    ('hour 24',       '1985-04-12T24:00:00Z',        'hour 24 does not exist'),
    ('minute 60',     '1985-04-12T23:60:50Z',        'minute 60 does not exist'),
    ('second 61',     '1985-04-12T23:59:61Z',        'second 61 does not exist'),
    ('fraction without digits', '1985-04-12T23:20:50.Z', 'the fraction of a second has no digits'),
    ('comma fraction', '1985-04-12T23:20:50,52Z',    'the time offset ("Z", "+hh:mm" or "-hh:mm") is missing'),
    ('trailing characters', '1985-04-12T23:20:50Zjunk', 'unexpected characters after the time offset'),
    ('trailing space', '1985-04-12T23:20:50Z ',      'unexpected characters after the time offset'),
    ('two offsets',   '1985-04-12T23:20:50Z+01:00',  'unexpected characters after the time offset'),
    ('offset seconds', '1985-04-12T23:20:50+01:00:00', 'unexpected characters after the time offset')
  ) AS x(d, v, why);

-- Unknown members
INSERT INTO bad (descr, doc, detail) VALUES
('unknown top-level member', pg_temp.b() || '{"name": "tick"}',
 'Field "name" is not an envelope member (allowed: id, type, version, data, metadata).'),
('member in the wrong case', pg_temp.b() || '{"Type": "new"}',
 'Field "Type" is not an envelope member (allowed: id, type, version, data, metadata).'),
('unknown member null', pg_temp.b() || '{"x": null}',
 'Field "x" is not an envelope member (allowed: id, type, version, data, metadata).'),
('long unknown member name is clipped', pg_temp.b() || jsonb_build_object(repeat('k', 100), 1),
 'Field "' || repeat('k', 64) || '..." is not an envelope member (allowed: id, type, version, data, metadata).'),
('long multibyte unknown name is clipped at a character', pg_temp.b() || jsonb_build_object('a' || repeat('é', 40), 1),
 -- 64 bytes hold "a" and 31 two-byte characters; a single-byte server
 -- encoding (SQL_ASCII when the cluster was created without a UTF-8 locale)
 -- clips at byte 64.
 'Field "' || CASE WHEN current_setting('server_encoding') = 'UTF8' THEN 'a' || repeat('é', 31)
                   ELSE left('a' || repeat('é', 40), 64) END
 || '..." is not an envelope member (allowed: id, type, version, data, metadata).');

-- The first rule broken is the one reported (size, shape, id, type, version,
-- data, metadata, source, time, unknown members).
INSERT INTO bad (descr, doc, detail) VALUES
('everything wrong: id reported first',
 '{"id": 1, "type": "", "version": "x", "data": [], "metadata": [], "extra": 1}',
 'Field "id" must be a string, not a number.'),
('bad type and version: type reported first', pg_temp.b('{type}', '""') || '{"version": "1"}',
 'Field "type" must not be empty.'),
('bad time and unknown member: time reported first', pg_temp.t('now') || '{"extra": 1}',
 'Field "metadata.time" must be an RFC 3339 date-time: the date is not YYYY-MM-DD.');

------------------------------------------------------------------------------
-- Valid envelopes
------------------------------------------------------------------------------

CREATE TEMP TABLE good (n serial, descr text, doc jsonb);
INSERT INTO good (descr, doc) VALUES
('the tick example of docs/events.md',     pg_temp.b()),
('time with lower-case t and z',           pg_temp.t('1985-04-12t23:20:50z')),
('time with offset +05:30',                pg_temp.t('1985-04-12T23:20:50+05:30')),
('time with offset -00:00',                pg_temp.t('1985-04-12T23:20:50-00:00')),
('time with offset +23:59',                pg_temp.t('1985-04-12T23:20:50+23:59')),
('time with fraction .52 and +02:00',      pg_temp.t('1985-04-12T23:20:50.52+02:00')),
('time with a fraction of many digits',    pg_temp.t('1985-04-12T23:20:50.123456789012345678901234567890Z')),
('time with a one-digit fraction',         pg_temp.t('1985-04-12T23:20:50.0Z')),
('leap day 2024-02-29',                    pg_temp.t('2024-02-29T12:00:00Z')),
('leap day 2000-02-29',                    pg_temp.t('2000-02-29T12:00:00Z')),
('leap second 23:59:60',                   pg_temp.t('1990-12-31T23:59:60Z')),
('leap second with an offset',             pg_temp.t('1990-12-31T15:59:60-08:00')),
('year 0000 and year 9999',                pg_temp.t('0000-01-01T00:00:00Z')),
('last instant of year 9999',              pg_temp.t('9999-12-31T23:59:59.999Z')),
('extra members inside metadata',          pg_temp.b('{metadata}', '{"source": "services/TickAPI", "time": "1985-04-12T23:20:50Z", "trace": {"id": "abc"}, "n": [1, 2]}')),
('upper-case UUID',                        pg_temp.b('{id}', '"123E4567-E89B-12D3-A456-426614174000"')),
('mixed-case UUID',                        pg_temp.b('{id}', '"123e4567-E89B-12d3-A456-426614174abc"')),
('nil UUID',                               pg_temp.b('{id}', '"00000000-0000-0000-0000-000000000000"')),
('version 0.0',                            pg_temp.b('{version}', '"0.0"')),
('version 2147483647.2147483647',          pg_temp.b('{version}', '"2147483647.2147483647"')),
('version 10.20',                          pg_temp.b('{version}', '"10.20"')),
('empty data object',                      pg_temp.b('{data}', '{}')),
('nested data',                            pg_temp.b('{data}', '{"a": {"b": {"c": [1, {"d": null}]}}}')),
('unicode in type and source',             pg_temp.b('{type}', '"nouveau-é-鳥-🐦"') || jsonb_build_object('metadata', '{"source": "services/Vogelbeobachtung-ü-鳥", "time": "1985-04-12T23:20:50Z"}'::jsonb)),
-- \u escapes of non-ASCII characters need a UTF-8 database; ASCII ones do not
('escapes in type and source',             pg_temp.b('{type}', '"a\"b\\c\nd\u0041\/"') || jsonb_build_object('metadata', '{"source": "services\/Tick\u0041PI\t", "time": "1985-04-12T23:20:50Z"}'::jsonb)),
('one-space type',                         pg_temp.b('{type}', '" "'));

------------------------------------------------------------------------------
-- Plan: 1 per bad case + 1, 2 per good case + 1, and the fixed assertions.
------------------------------------------------------------------------------

SELECT plan((SELECT count(*) FROM bad)::int + 1
          + 2 * (SELECT count(*) FROM good)::int + 1
          + 16);

-- Each invalid envelope: 22023, the message, the exact detail.
SELECT is(pg_temp.verr(doc), '22023: invalid event envelope / ' || detail,
          'validate refuses: ' || descr)
  FROM bad ORDER BY n;

SELECT is((SELECT string_agg(descr, ', ' ORDER BY n) FROM bad WHERE eventstore.is_valid(doc) IS DISTINCT FROM false),
          NULL, 'is_valid is false for every invalid envelope');

-- Each valid envelope: is_valid is true, validate does not raise.
SELECT ok(eventstore.is_valid(doc), 'is_valid accepts: ' || descr)
  FROM good ORDER BY n;
SELECT is(pg_temp.verr(doc), 'no error', 'validate accepts: ' || descr)
  FROM good ORDER BY n;

SELECT is((SELECT count(*) FROM bad b JOIN good g ON b.doc = g.doc), 0::bigint,
          'no document is both a valid and an invalid case');

------------------------------------------------------------------------------
-- NULL
------------------------------------------------------------------------------

SELECT is(eventstore.is_valid(NULL), NULL, 'is_valid(NULL) is NULL');
SELECT is(pg_temp.verr(NULL), '22004: invalid event envelope / The event is NULL.',
          'validate(NULL) raises 22004');

------------------------------------------------------------------------------
-- Size limit (eventstore.max_event_bytes, measured on the jsonb value)
------------------------------------------------------------------------------

-- Size of the jsonb value of the tick envelope (its varlena less the header).
CREATE TEMP TABLE sz AS SELECT pg_column_size(pg_temp.b()) - 4 AS bytes;

SELECT set_config('eventstore.max_event_bytes', (SELECT bytes FROM sz)::text, true);
SELECT is(pg_temp.verr(pg_temp.b()), 'no error',
          'an envelope of exactly eventstore.max_event_bytes is accepted');

SELECT set_config('eventstore.max_event_bytes', (SELECT bytes - 1 FROM sz)::text, true);
SELECT is(pg_temp.verr(pg_temp.b()),
          format('22023: invalid event envelope / The event is %s bytes, more than eventstore.max_event_bytes (%s).',
                 (SELECT bytes FROM sz), (SELECT bytes - 1 FROM sz)),
          'an envelope one byte over eventstore.max_event_bytes is refused');
SELECT is(eventstore.is_valid(pg_temp.b()), false, 'is_valid is false over the size limit');

-- The size is checked first: even a non-object is refused for its size.
SET LOCAL eventstore.max_event_bytes = 64;
SELECT is(pg_temp.verr(to_jsonb(repeat('x', 100))),
          '22023: invalid event envelope / The event is 108 bytes, more than eventstore.max_event_bytes (64).',
          'size is checked before the shape');
RESET eventstore.max_event_bytes;

SELECT is(pg_temp.verr(pg_temp.b('{data}', jsonb_build_object('blob', repeat('x', 2000000)))),
          format('22023: invalid event envelope / The event is %s bytes, more than eventstore.max_event_bytes (1048576).',
                 pg_column_size(pg_temp.b('{data}', jsonb_build_object('blob', repeat('x', 2000000)))) - 4),
          'a 2 MB envelope is over the default limit of 1 MB');

------------------------------------------------------------------------------
-- append and append_batch refuse with the same detail
------------------------------------------------------------------------------

SELECT eventstore.create_topic('t');

SELECT is(pg_temp.err_of(format('SELECT eventstore.append(%L, %L::jsonb)', 't', pg_temp.without('{id}'))),
          '22023: invalid event envelope / Field "id" is missing.',
          'append refuses a missing id with the detail of validate');
SELECT is(pg_temp.err_of(format('SELECT eventstore.append(%L, %L::jsonb)', 't', pg_temp.t('2023-02-29T12:00:00Z'))),
          '22023: invalid event envelope / Field "metadata.time" must be an RFC 3339 date-time: day 29 does not exist in 2023-02.',
          'append refuses a bad time with the detail of validate');
SELECT is(pg_temp.err_of(format('SELECT eventstore.append(%L, %L::jsonb)', 't', '[]')),
          '22023: invalid event envelope / The event must be a JSON object, not an array.',
          'append refuses a non-object with the detail of validate');

SELECT is(pg_temp.err_of(format('SELECT eventstore.append_batch(%L, ARRAY[%L, %L]::jsonb[])', 't',
                                pg_temp.b(),
                                pg_temp.b('{id}', '"223e4567-e89b-12d3-a456-426614174000"') || '{"type": ""}')),
          '22023: invalid event envelope / Event 2 of the batch: field "type" must not be empty.',
          'append_batch names the event of the batch');
SELECT is(pg_temp.err_of(format('SELECT eventstore.append_batch(%L, ARRAY[%L]::jsonb[])', 't', '"x"')),
          '22023: invalid event envelope / Event 1 of the batch: the event must be a JSON object, not a string.',
          'append_batch: a non-object, lower case after the prefix');
SELECT is((SELECT count(*) FROM eventstore.events), 0::bigint, 'nothing was stored by the refused appends');

------------------------------------------------------------------------------
-- Unknown metadata members survive a round trip
------------------------------------------------------------------------------

CREATE TEMP TABLE rt AS SELECT
    '{"id": "5f0c6b1e-3d2a-4c8b-9e7f-a1b2c3d4e5f6",
      "type": "new",
      "version": "1.0",
      "data": {"user": {"id": "8a1f4c2e-5b6d-4e7f-9a0b-1c2d3e4f5a6b"}, "image": {"url": "https://example.org/b.jpg"}},
      "metadata": {"source": "services/TickAPI", "time": "1985-04-12T23:20:50.52+02:00",
                   "trace": {"id": "abc", "hops": [1, 2, 3]}, "correlation_id": "0d3b2a1c-9e8f-4a7b-8c6d-5e4f3a2b1c0d", "flag": false,
                   "vögel": "鳥"}}'::jsonb AS doc;

SELECT ok(eventstore.append('t', (SELECT doc FROM rt)) > 0, 'append accepts metadata with extra members');
SELECT is((eventstore.get('5f0c6b1e-3d2a-4c8b-9e7f-a1b2c3d4e5f6')).envelope -> 'metadata',
          (SELECT doc -> 'metadata' FROM rt),
          'get returns the extra metadata members unchanged');
SELECT is((eventstore.get('5f0c6b1e-3d2a-4c8b-9e7f-a1b2c3d4e5f6')).envelope,
          (SELECT doc FROM rt),
          'get returns the envelope as appended');

SELECT * FROM finish();
ROLLBACK;
