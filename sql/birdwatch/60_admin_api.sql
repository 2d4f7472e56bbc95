-- sql/birdwatch/60_admin_api.sql: AdminAPI, for the people who run the
-- system: overview, deleting a user, setting the score secret, each change
-- recorded as an audit event.

-- Calls that change something run as birdwatch_audit, a role nobody is
-- granted: members of birdwatch_admin_api can neither append audit events
-- nor erase a user or set the secret without the call that records it.
-- The actor is the role the session acts as: the one SET ROLE chose (which
-- needs membership), else the login role; a SECURITY DEFINER call changes
-- neither.

CREATE FUNCTION audit(type text, action text, target jsonb) RETURNS uuid
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    event_id uuid := gen_random_uuid();
    actor    text := CASE current_setting('role') WHEN 'none' THEN session_user::text
                                                  ELSE current_setting('role') END;
BEGIN
    PERFORM eventstore.append('audit',
        birdwatch.envelope(event_id, type, '1.0',
                           jsonb_build_object('action', action,
                                              'actor', jsonb_build_object('role', actor,
                                                                          'session_user', session_user::text),
                                              'target', target),
                           'services/AdminAPI'));
    RETURN event_id;
END
$$;

CREATE FUNCTION admin_overview() RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'users', birdwatch.user_count(),
        'statistics', birdwatch.overview(),
        'consumers', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                 'name', c.name, 'lag_events', c.lag_events,
                                 'lag_seconds', c.lag_seconds, 'handled', c.handled,
                                 'parked', c.parked, 'last_error', c.last_error) ORDER BY c.name), '[]')
                        FROM eventstore.consumer_status c
                       WHERE c.name LIKE 'birdwatch\_%'))
$$;
COMMENT ON FUNCTION admin_overview() IS
    'AdminAPI: users, statistics and the lag of every birdwatch consumer';

CREATE FUNCTION delete_user(user_id uuid) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gdpr_id uuid;
BEGIN
    IF user_id IS NULL THEN
        RAISE EXCEPTION 'user id must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "user_id" is NULL.';
    END IF;
    IF NOT (birdwatch.email_address(user_id)).known THEN
        RAISE EXCEPTION 'user % does not exist', user_id
            USING ERRCODE = 'undefined_object',
                  DETAIL = 'Argument "user_id" names no registered watcher (or one already forgotten).';
    END IF;
    gdpr_id := birdwatch.request_erasure(user_id);
    PERFORM birdwatch.audit('delete', 'user.delete',
                            jsonb_build_object('user', jsonb_build_object('id', user_id),
                                               'gdpr_event', jsonb_build_object('id', gdpr_id)));
    RETURN gdpr_id;
END
$$;
COMMENT ON FUNCTION delete_user(uuid) IS
    'AdminAPI: forget a user as forget_me does, recorded as an audit event; returns the gdpr event id';

CREATE FUNCTION set_score_secret(secret text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF secret IS NULL OR length(secret) < 16 THEN
        RAISE EXCEPTION 'score secret too short'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Argument "secret" must have at least 16 characters.';
    END IF;
    -- Written, never read: birdwatch_audit may UPDATE the table, not SELECT it.
    UPDATE birdwatch.score_secret SET secret = set_score_secret.secret, changed_at = now();
    PERFORM birdwatch.audit('update', 'score_secret.set', '{}'::jsonb);
END
$$;
COMMENT ON FUNCTION set_score_secret(text) IS
    'AdminAPI: replace the ScoreModel''s secret (scores of later ticks change); recorded as an audit event';

ALTER FUNCTION admin_overview() OWNER TO birdwatch_admin_api;
ALTER FUNCTION audit(text, text, jsonb) OWNER TO birdwatch_audit;
ALTER FUNCTION delete_user(uuid) OWNER TO birdwatch_audit;
ALTER FUNCTION set_score_secret(text) OWNER TO birdwatch_audit;
