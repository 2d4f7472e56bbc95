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

\echo Use "ALTER EXTENSION birdwatch UPDATE TO '1.1'" to load this file. \quit

------------------------------------------------------------------------------
-- The descriptions point at the project's own documentation of the event
-- contract, docs/events.md.
------------------------------------------------------------------------------

COMMENT ON EXTENSION birdwatch IS 'the bird-watching system of docs/events.md on eventstore: services as roles and SQL functions, consumers';
COMMENT ON FUNCTION envelope(uuid, text, text, jsonb, text) IS
    'an event envelope (docs/events.md) with metadata.source and metadata.time (now, RFC 3339)';

CREATE OR REPLACE FUNCTION count_event(e eventstore.event) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d      jsonb := e.envelope->'data';
    on_day date := (e.recorded_at AT TIME ZONE 'UTC')::date;
    uid    uuid := birdwatch.as_uuid(d #> '{user,id}');
    grade  integer;
    url    text;
BEGIN
    INSERT INTO birdwatch.stats_seen VALUES (e.id) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO birdwatch.stats_daily AS s VALUES (on_day, e.topic, 1)
        ON CONFLICT (day, topic) DO UPDATE SET events = s.events + 1;
    -- Counted above whatever its shape; below, only what it says in its
    -- documented shape (see as_uuid).
    CASE e.topic
    WHEN 'tick' THEN
        IF uid IS NOT NULL THEN
            INSERT INTO birdwatch.stats_user_ticks AS s VALUES (uid, 1)
                ON CONFLICT (user_id) DO UPDATE SET ticks = s.ticks + 1;
        END IF;
    WHEN 'rate' THEN
        grade := birdwatch.as_grade(d->'rating');
        IF grade IS NOT NULL THEN
            INSERT INTO birdwatch.stats_ratings AS s VALUES (grade, 1)
                ON CONFLICT (rating) DO UPDATE SET ratings = s.ratings + 1;
        END IF;
    WHEN 'score' THEN
        grade := birdwatch.as_grade(d->'score');
        url := birdwatch.as_image_url(d #> '{image,url}');
        IF grade IS NOT NULL AND url IS NOT NULL THEN
            INSERT INTO birdwatch.stats_image_scores AS s VALUES (url, grade, 1)
                ON CONFLICT (image_url) DO UPDATE SET score_sum = s.score_sum + excluded.score_sum,
                                                      scores = s.scores + 1;
        END IF;
    WHEN 'user' THEN
        IF uid IS NOT NULL THEN
            INSERT INTO birdwatch.stats_login_seen VALUES (on_day, uid) ON CONFLICT DO NOTHING;
        END IF;
        IF uid IS NOT NULL AND FOUND THEN
            INSERT INTO birdwatch.stats_daily_logins AS s VALUES (on_day, 1)
                ON CONFLICT (day) DO UPDATE SET users = s.users + 1;
        END IF;
    WHEN 'gdpr' THEN
        DELETE FROM birdwatch.stats_user_ticks WHERE user_id = uid;
        DELETE FROM birdwatch.stats_login_seen WHERE user_id = uid;
    ELSE
        NULL;
    END CASE;
END
$$;
