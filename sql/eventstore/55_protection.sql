-- sql/eventstore/55_protection.sql: crypto-shredding.  Personal fields
-- encrypted with a key per subject (extension/protect.c); forgetting the
-- subject destroys the key.

-- Crypto-shredding: personal fields encrypted with a key per subject
-- (extension/protect.c).  A topic declares the dotted paths of its personal
-- fields in data and the path of the subject (the person) they belong to.
-- Appends replace each present field by {"protected": <base64>, "key": <key
-- id>}, AES-256-CBC under the subject's key; forget_subject() deletes the
-- key, after which those fields can no longer be decrypted by anyone.  The
-- cipher comes from pgcrypto, which eventstore does not require: it is
-- looked up when a topic is protected and at every use.

CREATE TABLE protections (
    topic        text COLLATE "C" PRIMARY KEY REFERENCES topics (name) ON DELETE CASCADE,
    subject_path text NOT NULL,
    paths        text[] NOT NULL CHECK (pg_catalog.cardinality(paths) BETWEEN 1 AND 16),
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE protections IS
    'topics whose personal fields (dotted paths in data) are encrypted per subject';

-- Appends cache whether a topic is protected with the topic itself.
CREATE TRIGGER protections_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON protections
    FOR EACH STATEMENT EXECUTE FUNCTION topics_changed();

-- One key per subject, created by the first append that needs it; readable
-- by the extension's owner only.  key_id tells the key apart from a later
-- one of the same subject (after forget_subject), so that events encrypted
-- under a destroyed key read as shredded rather than as garbage.
CREATE TABLE subject_keys (
    subject    text PRIMARY KEY,
    key_id     bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    key        bytea NOT NULL CHECK (pg_catalog.length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE subject_keys IS
    'the key of every subject with protected fields; forget_subject() deletes it';

-- The schema of pgcrypto, quoted, or 55000 when it is not installed.
CREATE FUNCTION crypto_schema() RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s text;
BEGIN
    SELECT quote_ident(n.nspname) INTO s
      FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
     WHERE x.extname = 'pgcrypto';
    IF s IS NULL THEN
        RAISE EXCEPTION 'crypto-shredding needs the extension pgcrypto'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'pgcrypto is not installed in this database.',
                  HINT = 'Run CREATE EXTENSION pgcrypto (Debian: package postgresql-contrib).';
    END IF;
    RETURN s;
END
$$;

-- Encrypts (or decrypts) one field of one event: AES-256-CBC with a key
-- derived from the subject's key, and an IV derived from the event's id
-- and the field's path.  Deterministic, so that appending the same event
-- again gives the same stored content (an idempotent duplicate); two
-- different events or fields never share an IV.  Arguments are cast to
-- pgcrypto's exact signatures.
CREATE FUNCTION crypt_field(encrypt boolean, key bytea, event_id uuid, path text, input bytea)
RETURNS bytea
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result bytea;
BEGIN
    EXECUTE format('SELECT %1$s.%2$s($1,'
                   ' %1$s.hmac(''eventstore field key''::bytea, $2, ''sha256''::text),'
                   ' substring(%1$s.hmac(convert_to($3::text || ''/'' || $4, ''UTF8''), $2, ''sha256''::text) FROM 1 FOR 16),'
                   ' ''aes-cbc/pad:pkcs''::text)',
                   eventstore.crypto_schema(), CASE WHEN encrypt THEN 'encrypt_iv' ELSE 'decrypt_iv' END)
        USING input, key, event_id, path
        INTO result;
    RETURN result;
END
$$;

-- Validates one dotted path argument: segments of [a-z0-9_].
CREATE FUNCTION check_protect_path(argument text, path text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF path IS NULL OR path !~ '^[a-z0-9_]+(\.[a-z0-9_]+)*$' OR length(path) > 255 THEN
        RAISE EXCEPTION 'invalid protected path'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "%s" has %s; a path is dot-separated members of [a-z0-9_], at most 255 characters.',
                                  argument, coalesce(quote_literal(path), 'NULL'));
    END IF;
END
$$;

CREATE FUNCTION protect_fields(topic text, subject_path text, paths text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old     eventstore.protections;
    merged  text[];
    p       text;
    q       text;
BEGIN
    IF topic IS NULL THEN
        RAISE EXCEPTION 'topic must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "topic" is NULL.';
    END IF;
    IF NOT EXISTS (SELECT FROM eventstore.topics t WHERE t.name = topic) THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object',
                  HINT = format('Create it with eventstore.create_topic(%L).', topic);
    END IF;
    PERFORM eventstore.check_protect_path('subject_path', subject_path);
    IF paths IS NULL OR cardinality(paths) = 0 OR array_ndims(paths) <> 1 THEN
        RAISE EXCEPTION 'invalid protected paths'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Argument "paths" must be a one-dimensional array of 1 to 16 paths.';
    END IF;
    FOREACH p IN ARRAY paths LOOP
        PERFORM eventstore.check_protect_path('paths', p);
    END LOOP;
    SELECT * INTO old FROM eventstore.protections r WHERE r.topic = protect_fields.topic FOR UPDATE;
    IF FOUND AND old.subject_path <> subject_path THEN
        RAISE EXCEPTION 'invalid subject path'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "subject_path" is %L; topic %L protects the fields of subject %L, which cannot change.',
                                  subject_path, topic, old.subject_path);
    END IF;
    -- Paths only ever grow: a field once protected stays protected, and
    -- older events keep reading.
    merged := ARRAY(SELECT DISTINCT x FROM unnest(coalesce(old.paths, '{}') || paths) AS x ORDER BY x);
    IF cardinality(merged) > 16 THEN
        RAISE EXCEPTION 'invalid protected paths'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "paths" would make %s protected paths on topic %L; at most 16.',
                                  cardinality(merged), topic);
    END IF;
    -- The subject must stay readable, and no field may lie inside another.
    FOREACH p IN ARRAY merged LOOP
        IF p = subject_path OR starts_with(subject_path, p || '.') OR starts_with(p, subject_path || '.') THEN
            RAISE EXCEPTION 'invalid protected paths'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Argument "paths" has %L, which overlaps the subject path %L.', p, subject_path);
        END IF;
        FOREACH q IN ARRAY merged LOOP
            IF starts_with(q, p || '.') THEN
                RAISE EXCEPTION 'invalid protected paths'
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('Argument "paths" has %L inside %L.', q, p);
            END IF;
        END LOOP;
    END LOOP;
    PERFORM eventstore.crypto_schema();
    INSERT INTO eventstore.protections AS r (topic, subject_path, paths)
    VALUES (topic, subject_path, merged)
    ON CONFLICT ON CONSTRAINT protections_pkey DO UPDATE SET paths = EXCLUDED.paths;
    PERFORM eventstore.refresh_archive();
END
$$;
COMMENT ON FUNCTION protect_fields(text, text, text[]) IS
    'encrypt the personal fields at paths (in data) of every event appended to topic from now on, per subject (subject_path)';

-- The key of a subject, created when it has none.  Called by appends as the
-- owner.
CREATE FUNCTION subject_key(subject text, OUT key bytea, OUT key_id bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT s.key, s.key_id INTO key, key_id FROM eventstore.subject_keys s WHERE s.subject = subject_key.subject;
    IF FOUND THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT %s.gen_random_bytes(32)', eventstore.crypto_schema()) INTO key;
    INSERT INTO eventstore.subject_keys AS s (subject, key) VALUES (subject, key)
    ON CONFLICT ON CONSTRAINT subject_keys_pkey DO NOTHING
    RETURNING s.key_id INTO key_id;
    IF key_id IS NULL THEN
        -- a concurrent append created it first; READ COMMITTED sees it now
        SELECT s.key, s.key_id INTO key, key_id FROM eventstore.subject_keys s WHERE s.subject = subject_key.subject;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'could not serialize access due to a concurrent append for the same subject'
                USING ERRCODE = 'serialization_failure',
                      HINT = 'Retry the append.';
        END IF;
    END IF;
END
$$;

-- The data of an event appended to a protected topic, its personal fields
-- encrypted.  Called by append (C) as the owner for each event of a
-- protected topic; batch_index is 0 for a single event.
CREATE FUNCTION protect_data(topic text, data jsonb, event_id uuid, batch_index integer)
RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pr      eventstore.protections;
    subject jsonb;
    k       record;
    p       text;
    path    text[];
    v       jsonb;
    keyed   boolean := false;
BEGIN
    SELECT * INTO pr FROM eventstore.protections r WHERE r.topic = protect_data.topic;
    IF NOT FOUND THEN
        RETURN data;
    END IF;
    subject := data #> string_to_array(pr.subject_path, '.');
    IF subject IS NULL OR jsonb_typeof(subject) NOT IN ('string', 'number') OR subject #>> '{}' = '' THEN
        RAISE EXCEPTION 'event names no subject'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('%sField "data.%s" must be a non-empty string or a number: topic %L encrypts personal fields per subject.',
                                  CASE WHEN batch_index > 0 THEN format('Event %s of the batch: ', batch_index) ELSE '' END,
                                  pr.subject_path, topic);
    END IF;
    FOREACH p IN ARRAY pr.paths LOOP
        path := string_to_array(p, '.');
        v := data #> path;
        CONTINUE WHEN v IS NULL OR v = 'null'::jsonb;
        -- A subject gets a key with its first personal value, not before.
        IF NOT keyed THEN
            SELECT * INTO k FROM eventstore.subject_key(subject #>> '{}');
            keyed := true;
        END IF;
        data := jsonb_set(data, path, jsonb_build_object(
            'protected', translate(encode(eventstore.crypt_field(true, k.key, event_id, p, convert_to(v::text, 'UTF8')),
                                          'base64'), E'\n', ''),
            'key', k.key_id));
    END LOOP;
    RETURN data;
END
$$;

-- unprotect() (C) passes its caller: members of eventstore_decrypt get the
-- plain values; fields whose key is gone read as null, listed in
-- metadata.shredded, whoever asks.
CREATE FUNCTION unprotect_as(e event, caller oid) RETURNS event
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pr       eventstore.protections;
    data     jsonb;
    decrypt  boolean;
    k        record;
    p        text;
    path     text[];
    v        jsonb;
    shredded text[] := '{}';
BEGIN
    IF e.topic IS NULL OR e.envelope IS NULL THEN
        RETURN e;
    END IF;
    PERFORM eventstore.check_topics_readable(caller, ARRAY[e.topic], 'calling unprotect');
    SELECT * INTO pr FROM eventstore.protections r WHERE r.topic = e.topic;
    IF NOT FOUND THEN
        RETURN e;
    END IF;
    decrypt := pg_has_role(caller, 'eventstore_decrypt', 'USAGE');
    data := e.envelope->'data';
    SELECT s.key, s.key_id INTO k FROM eventstore.subject_keys s
     WHERE s.subject = data #>> string_to_array(pr.subject_path, '.');
    FOREACH p IN ARRAY pr.paths LOOP
        path := string_to_array(p, '.');
        v := data #> path;
        CONTINUE WHEN v IS NULL OR jsonb_typeof(v) <> 'object' OR jsonb_typeof(v->'protected') <> 'string'
                   OR jsonb_typeof(v->'key') <> 'number';
        IF k.key IS NULL OR k.key_id <> (v->>'key')::numeric THEN
            data := jsonb_set(data, path, 'null'::jsonb);
            shredded := shredded || p;
        ELSIF decrypt THEN
            data := jsonb_set(data, path, convert_from(
                eventstore.crypt_field(false, k.key, e.id, p, decode(v->>'protected', 'base64')), 'UTF8')::jsonb);
        END IF;
    END LOOP;
    e.envelope := jsonb_set(e.envelope, '{data}', data);
    IF cardinality(shredded) > 0 THEN
        e.envelope := jsonb_set(e.envelope, '{metadata,shredded}', to_jsonb(shredded));
    END IF;
    RETURN e;
END
$$;

CREATE FUNCTION unprotect(e event) RETURNS event
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'eventstore_unprotect';
COMMENT ON FUNCTION unprotect(event) IS
    'the event with its protected fields decrypted for members of eventstore_decrypt; fields whose subject was forgotten read as null (metadata.shredded)';

CREATE FUNCTION forget_subject(subject text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF subject IS NULL THEN
        RAISE EXCEPTION 'subject must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'Argument "subject" is NULL.';
    END IF;
    DELETE FROM eventstore.subject_keys s WHERE s.subject = forget_subject.subject;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION forget_subject(text) IS
    'destroy the key of a subject: its protected fields in every topic become unreadable; returns whether it had one';

-- pg_dump: the keys belong in a dump with the events they decrypt, and so
-- does the sequence that numbers them, so that a restored store's fields
-- stay readable and a new key never takes the id of a restored one.
SELECT pg_catalog.pg_extension_config_dump('subject_keys', '');
SELECT pg_catalog.pg_extension_config_dump('subject_keys_key_id_seq', '');
