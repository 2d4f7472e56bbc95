-- sql/birdwatch/40_score_model.sql: ScoreModel: scores every ticked image
-- from a secret of its own, as a consumer of tick appending to score.

-- The secret is configuration, readable by the score model alone.  It is
-- random at installation; AdminAPI replaces it with set_score_secret().
CREATE TABLE score_secret (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    secret     text NOT NULL CHECK (pg_catalog.length(secret) >= 16),
    changed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- The table holds one secret, so inserting one replaces the one stored: a
-- restore runs this script, which stores a random secret, before it copies
-- the dumped secret in (test/shell/dump_restore.sh).  Owned by the
-- extension's owner; it runs as whoever inserts.
CREATE FUNCTION replace_score_secret() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM birdwatch.score_secret;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION replace_score_secret() IS
    'trigger: a new score secret replaces the one stored (a restore copies in the dumped one)';

CREATE TRIGGER one_score_secret BEFORE INSERT ON score_secret
    FOR EACH ROW EXECUTE FUNCTION replace_score_secret();

INSERT INTO score_secret (secret)
VALUES (pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '')
        || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', ''));
COMMENT ON TABLE score_secret IS 'ScoreModel: the secret of the score formula';

-- 1..5 from SHA-256 of the secret and the image URL.  PL/pgSQL, to keep
-- its plan: ScoreModel calls it for every tick.
CREATE FUNCTION score_image(image_url text) RETURNS integer
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    score integer;
BEGIN
    SELECT 1 + (('x' || substr(encode(sha256(convert_to(s.secret || E'\n' || image_url, 'UTF8')), 'hex'), 1, 15))::bit(60)::bigint % 5)::integer
      INTO score
      FROM birdwatch.score_secret s;
    RETURN score;
END
$$;

-- The ticks scored: a tick seen again is not scored again, even after the
-- secret changed (its score event stands; stored events never change).
CREATE TABLE scored_ticks (
    tick_id uuid PRIMARY KEY
);
COMMENT ON TABLE scored_ticks IS 'ScoreModel: the tick events it has scored';

-- The score event's time is its tick's recording time, so that its
-- content, like its id, follows from the tick alone.
CREATE FUNCTION score_tick(e eventstore.event) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    url text := birdwatch.as_image_url(e.envelope #> '{data,image,url}');
BEGIN
    IF url IS NULL THEN
        RETURN;                                       -- no image to score
    END IF;
    INSERT INTO birdwatch.scored_ticks VALUES (e.id) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM eventstore.append('score',
        jsonb_build_object(
            'id', eventstore.derived_id(e.id, 'birdwatch_score_model'),
            'type', 'update',
            'version', '1.0',
            'data', jsonb_build_object('image', jsonb_build_object('url', url),
                                       'score', birdwatch.score_image(url)),
            'metadata', jsonb_build_object(
                'source', 'services/ScoreModel',
                'time', to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))));
END
$$;

ALTER FUNCTION score_image(text) OWNER TO birdwatch_score_model;
ALTER FUNCTION score_tick(eventstore.event) OWNER TO birdwatch_score_model;

-- pg_dump: the data of these tables belongs in a dump (one call per
-- statement: each call rewrites the extension's catalog row).
SELECT pg_catalog.pg_extension_config_dump('score_secret', '');
SELECT pg_catalog.pg_extension_config_dump('scored_ticks', '');
