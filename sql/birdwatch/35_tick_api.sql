-- sql/birdwatch/35_tick_api.sql: TickAPI: ticks and ratings of images, the
-- requests to forget a user, and the upcaster of old rate events.

CREATE TABLE ticks (
    image_url text COLLATE "C" PRIMARY KEY,
    owner     uuid NOT NULL,
    event_id  uuid NOT NULL,
    ticked_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX ticks_owner ON ticks (owner);
COMMENT ON TABLE ticks IS 'TickAPI: every ticked image and the watcher who ticked it';

-- An absolute http or https URL without credentials, spaces or control
-- characters, of at most 2048 characters.
CREATE FUNCTION check_image_url(image_url text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF image_url IS NULL THEN
        RAISE EXCEPTION 'image url must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "image_url" is NULL.';
    END IF;
    IF length(image_url) > 2048 THEN
        RAISE EXCEPTION 'image url too long'
            USING ERRCODE = 'string_data_right_truncation',
                  DETAIL = format('Argument "image_url" has %s characters; at most 2048 are allowed.', length(image_url));
    END IF;
    IF image_url !~ '^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?([/?#][!-~]*)?$' THEN
        RAISE EXCEPTION 'invalid image url'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "image_url" (%s) must be an absolute http or https URL with a host name, without credentials or spaces.',
                                  left(image_url, 200));
    END IF;
END
$$;

CREATE FUNCTION tick(token text, image_url text) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    uid      uuid := birdwatch.authenticate(token, NULL, false);
    new_id   uuid := gen_random_uuid();
    t        birdwatch.ticks;
BEGIN
    PERFORM birdwatch.check_image_url(image_url);
    INSERT INTO birdwatch.ticks (image_url, owner, event_id)
    VALUES (tick.image_url, uid, new_id)
    ON CONFLICT ON CONSTRAINT ticks_pkey DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO t FROM birdwatch.ticks k WHERE k.image_url = tick.image_url;
        IF t.owner = uid THEN
            RETURN t.event_id;          -- the same watcher again: a retry
        END IF;
        RAISE EXCEPTION 'image already ticked'
            USING ERRCODE = 'unique_violation',
                  DETAIL = 'Argument "image_url" names an image another watcher ticked.';
    END IF;
    -- A tick starts a story (metadata.correlation_id, its own id): its
    -- score carries the same correlation id (eventstore fills it in).
    PERFORM eventstore.append('tick',
        jsonb_set(birdwatch.envelope(new_id, 'new', '1.0',
                                     jsonb_build_object('user', jsonb_build_object('id', uid),
                                                        'image', jsonb_build_object('url', image_url)),
                                     'services/TickAPI'),
                  '{metadata,correlation_id}', to_jsonb(new_id)));
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION tick(text, text) IS
    'TickAPI: report a bird with the URL of its image; returns the tick event id';

CREATE FUNCTION rate(token text, image_url text, rating integer) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    uid      uuid := birdwatch.authenticate(token, NULL, false);
    event_id uuid := gen_random_uuid();
    owner    uuid;
BEGIN
    PERFORM birdwatch.check_image_url(image_url);
    IF rating IS NULL THEN
        RAISE EXCEPTION 'rating must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "rating" is NULL.';
    END IF;
    IF rating NOT BETWEEN 1 AND 5 THEN
        RAISE EXCEPTION 'rating out of range'
            USING ERRCODE = 'numeric_value_out_of_range',
                  DETAIL = format('Argument "rating" is %s; it must be between 1 and 5.', rating);
    END IF;
    SELECT k.owner INTO owner FROM birdwatch.ticks k WHERE k.image_url = rate.image_url;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'image not ticked'
            USING ERRCODE = 'no_data_found',
                  DETAIL = format('Argument "image_url" (%s) names no ticked image.', left(image_url, 200)),
                  HINT = 'Only ticked images can be rated.';
    END IF;
    -- A rating starts a story too: the notification of its email joins it.
    PERFORM eventstore.append('rate',
        jsonb_set(birdwatch.envelope(event_id, 'update', '2.0',
                                     jsonb_build_object('user', jsonb_build_object('id', uid),
                                                        'image', jsonb_build_object('url', image_url, 'owner', owner),
                                                        'rating', rating),
                                     'services/TickAPI'),
                  '{metadata,correlation_id}', to_jsonb(event_id)));
    RETURN event_id;
END
$$;
COMMENT ON FUNCTION rate(text, text, integer) IS
    'TickAPI: rate a ticked image 1..5; returns the rate event id';

CREATE FUNCTION request_erasure(user_id uuid) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    event_id uuid := gen_random_uuid();
BEGIN
    IF user_id IS NULL THEN
        RAISE EXCEPTION 'user id must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "user_id" is NULL.';
    END IF;
    PERFORM eventstore.append('gdpr',
        birdwatch.envelope(event_id, 'delete', '1.0',
                           jsonb_build_object('user', jsonb_build_object('id', user_id)),
                           'services/TickAPI'));
    RETURN event_id;
END
$$;
COMMENT ON FUNCTION request_erasure(uuid) IS
    'TickAPI, for forget_me and AdminAPI: append gdpr/delete for a user';

CREATE FUNCTION forget_me(token text) RETURNS uuid
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT birdwatch.request_erasure(birdwatch.authenticate(token, NULL, false)) $$;
COMMENT ON FUNCTION forget_me(text) IS
    'TickAPI: ask for the deletion of your personal data; returns the gdpr event id';

/*
 * rate 1.0 -> 2.0 (docs/events.md): 1.0 named the image by "image_url" and not
 * its owner, who is the watcher that ticked it.  Stored events are never
 * rewritten: eventstore runs this on the way to consumers and readers.
 */
CREATE FUNCTION upcast_rate_1_to_2(envelope jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    url   text := envelope #>> '{data,image_url}';
    owner uuid;
BEGIN
    SELECT k.owner INTO owner FROM birdwatch.ticks k WHERE k.image_url = url;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cannot upcast rate event % to 2.0', envelope->>'id'
            USING ERRCODE = 'no_data_found',
                  DETAIL = format('Its data.image_url (%s) names no ticked image, so it has no owner.', left(url, 200));
    END IF;
    RETURN jsonb_set(jsonb_set(envelope, '{version}', '"2.0"'),
                     '{data}',
                     (envelope->'data') - 'image_url'
                     || jsonb_build_object('image', jsonb_build_object('url', url, 'owner', owner)));
END
$$;

-- rate 1.0 events reach every consumer and reader as 2.0.  Upcasters are
-- eventstore's rows too: a re-created extension finds this one in place.
SELECT eventstore.create_upcaster('rate', 1, 2, 'birdwatch.upcast_rate_1_to_2(jsonb)')
 WHERE NOT EXISTS (SELECT FROM eventstore.upcasters WHERE topic = 'rate' AND from_major = 1);

-- eventstore runs an upcaster as the role that registered it: here the
-- superuser running this script.  It must run as birdwatch_tick_api, the
-- owner of its function, instead: an owner may ALTER its function, and a
-- member of birdwatch_tick_api that can create objects in some schema (a
-- database owner can in public) could make it SECURITY INVOKER with a
-- search_path reaching an operator of its own, which every consumer of
-- rate (and every reader calling upcast) would then run as that superuser.
-- Run as its owner, it has no more than the privileges its owner has
-- anyway (test/pgtap/privilege_audit.sql).  It is registered before the
-- function changes owner: eventstore refuses an upcaster whose owner lacks
-- the privileges of the role it runs as.
UPDATE eventstore.upcasters
   SET run_as = 'birdwatch_tick_api'
 WHERE topic = 'rate' AND from_major = 1 AND fn = 'birdwatch.upcast_rate_1_to_2(jsonb)';

ALTER FUNCTION tick(text, text) OWNER TO birdwatch_tick_api;
ALTER FUNCTION rate(text, text, integer) OWNER TO birdwatch_tick_api;
ALTER FUNCTION request_erasure(uuid) OWNER TO birdwatch_tick_api;
ALTER FUNCTION forget_me(text) OWNER TO birdwatch_tick_api;
ALTER FUNCTION upcast_rate_1_to_2(jsonb) OWNER TO birdwatch_tick_api;

-- pg_dump: the data of these tables belongs in a dump (one call per
-- statement: each call rewrites the extension's catalog row).
SELECT pg_catalog.pg_extension_config_dump('ticks', '');
