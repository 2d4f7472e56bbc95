-- sql/birdwatch/50_statistics.sql: Statistics: a consumer of every topic
-- that keeps aggregates for analysis, never personal data, and the calls
-- AdminAPI reads them with.

-- Every event counted, so that a redelivered event counts once.
CREATE TABLE stats_seen (
    event_id uuid PRIMARY KEY
);
CREATE TABLE stats_daily (
    day    date NOT NULL,
    topic  text NOT NULL,
    events bigint NOT NULL,
    PRIMARY KEY (day, topic)
);
CREATE TABLE stats_ratings (
    rating  integer PRIMARY KEY CHECK (rating BETWEEN 1 AND 5),
    ratings bigint NOT NULL
);
CREATE TABLE stats_image_scores (
    image_url text COLLATE "C" PRIMARY KEY,
    score_sum bigint NOT NULL,
    scores    bigint NOT NULL
);
-- Per user: removed when the user is forgotten.
CREATE TABLE stats_user_ticks (
    user_id uuid PRIMARY KEY,
    ticks   bigint NOT NULL
);
CREATE TABLE stats_daily_logins (
    day   date PRIMARY KEY,
    users bigint NOT NULL
);
CREATE TABLE stats_login_seen (
    day     date NOT NULL,
    user_id uuid NOT NULL,
    PRIMARY KEY (day, user_id)
);
CREATE INDEX stats_login_seen_user ON stats_login_seen (user_id);
COMMENT ON TABLE stats_daily IS 'Statistics: events per day and topic';
COMMENT ON TABLE stats_user_ticks IS 'Statistics: ticks per user id; rows of forgotten users are removed';
COMMENT ON TABLE stats_login_seen IS 'Statistics: who logged in on which day, to count distinct logins; rows of forgotten users are removed';

-- Every event counts in stats_daily whatever its shape; the other tables
-- count only what an event says in the shape docs/events.md gives it
-- (see as_uuid).
CREATE FUNCTION count_event(e eventstore.event) RETURNS void
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

CREATE FUNCTION overview() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'events_by_topic', (SELECT coalesce(jsonb_object_agg(topic, n), '{}')
                              FROM (SELECT topic, sum(events) AS n FROM birdwatch.stats_daily
                                     GROUP BY topic) t),
        'ticks', (SELECT coalesce(sum(events), 0) FROM birdwatch.stats_daily WHERE topic = 'tick'),
        'ratings', (SELECT jsonb_object_agg(r, coalesce(s.ratings, 0) ORDER BY r)
                      FROM generate_series(1, 5) AS r
                      LEFT JOIN birdwatch.stats_ratings s ON s.rating = r),
        'average_rating', (SELECT round(sum(rating * ratings)::numeric / nullif(sum(ratings), 0), 2)
                             FROM birdwatch.stats_ratings),
        'images_scored', (SELECT count(*) FROM birdwatch.stats_image_scores),
        'average_score', (SELECT round(avg(score_sum::numeric / scores), 2)
                            FROM birdwatch.stats_image_scores),
        'watchers_with_ticks', (SELECT count(*) FROM birdwatch.stats_user_ticks),
        'emails_sent', (SELECT coalesce(sum(events), 0) FROM birdwatch.stats_daily
                         WHERE topic = 'notification'),
        'deletions', (SELECT coalesce(sum(events), 0) FROM birdwatch.stats_daily WHERE topic = 'gdpr'),
        'distinct_logins_today', (SELECT coalesce(max(users), 0) FROM birdwatch.stats_daily_logins
                                   WHERE day = (now() AT TIME ZONE 'UTC')::date))
$$;
COMMENT ON FUNCTION overview() IS
    'Statistics, for AdminAPI: totals, ratings histogram, average score, emails sent, deletions';

CREATE FUNCTION daily(from_day date, to_day date)
RETURNS TABLE (day date, ticks bigint, ratings bigint, scores bigint, emails_sent bigint,
               deletions bigint, logins bigint, distinct_logins bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF from_day IS NULL OR to_day IS NULL THEN
        RAISE EXCEPTION 'days must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = format('Argument "%s" is NULL.', CASE WHEN from_day IS NULL THEN 'from_day' ELSE 'to_day' END);
    END IF;
    IF to_day < from_day OR to_day - from_day > 3660 THEN
        RAISE EXCEPTION 'invalid day range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "to_day" (%s) must be on or after "from_day" (%s), at most 3660 days later.',
                                  to_day, from_day);
    END IF;
    RETURN QUERY
        SELECT g.day::date,
               coalesce(sum(s.events) FILTER (WHERE s.topic = 'tick'), 0)::bigint,
               coalesce(sum(s.events) FILTER (WHERE s.topic = 'rate'), 0)::bigint,
               coalesce(sum(s.events) FILTER (WHERE s.topic = 'score'), 0)::bigint,
               coalesce(sum(s.events) FILTER (WHERE s.topic = 'notification'), 0)::bigint,
               coalesce(sum(s.events) FILTER (WHERE s.topic = 'gdpr'), 0)::bigint,
               coalesce(sum(s.events) FILTER (WHERE s.topic = 'user'), 0)::bigint,
               coalesce((SELECT l.users FROM birdwatch.stats_daily_logins l WHERE l.day = g.day::date), 0)
          FROM generate_series(from_day, to_day, interval '1 day') AS g(day)
          LEFT JOIN birdwatch.stats_daily s ON s.day = g.day::date
         GROUP BY g.day
         ORDER BY g.day;
END
$$;
COMMENT ON FUNCTION daily(date, date) IS
    'Statistics, for AdminAPI: counts per day from from_day to to_day';

ALTER FUNCTION count_event(eventstore.event) OWNER TO birdwatch_statistics;
ALTER FUNCTION overview() OWNER TO birdwatch_statistics;
ALTER FUNCTION daily(date, date) OWNER TO birdwatch_statistics;

-- pg_dump: the data of these tables belongs in a dump (one call per
-- statement: each call rewrites the extension's catalog row).
SELECT pg_catalog.pg_extension_config_dump('stats_seen', '');
SELECT pg_catalog.pg_extension_config_dump('stats_daily', '');
SELECT pg_catalog.pg_extension_config_dump('stats_ratings', '');
SELECT pg_catalog.pg_extension_config_dump('stats_image_scores', '');
SELECT pg_catalog.pg_extension_config_dump('stats_user_ticks', '');
SELECT pg_catalog.pg_extension_config_dump('stats_daily_logins', '');
SELECT pg_catalog.pg_extension_config_dump('stats_login_seen', '');
