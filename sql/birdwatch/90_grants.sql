-- sql/birdwatch/90_grants.sql: privileges.  Nothing for PUBLIC; each
-- service exactly what it needs.  Runs last, after every object exists.

REVOKE ALL ON SCHEMA birdwatch FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA birdwatch FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA birdwatch FROM PUBLIC;

GRANT USAGE ON SCHEMA birdwatch
    TO birdwatch_app, birdwatch_tick_api, birdwatch_auth_api, birdwatch_user_api,
       birdwatch_score_model, birdwatch_notifier, birdwatch_statistics, birdwatch_admin_api,
       birdwatch_audit;

-- Shared helpers, pure functions of their arguments.
GRANT EXECUTE ON FUNCTION rfc3339_now(), envelope(uuid, text, text, jsonb, text)
    TO birdwatch_tick_api, birdwatch_auth_api, birdwatch_score_model,
       birdwatch_notifier, birdwatch_audit;
GRANT EXECUTE ON FUNCTION token_hash(text), check_email(text), check_display_name(text)
    TO birdwatch_user_api;
GRANT EXECUTE ON FUNCTION check_image_url(text) TO birdwatch_tick_api;
GRANT EXECUTE ON FUNCTION as_uuid(jsonb), as_grade(jsonb), as_image_url(jsonb)
    TO birdwatch_user_api, birdwatch_score_model, birdwatch_notifier, birdwatch_statistics;

-- The client.
GRANT EXECUTE ON FUNCTION register_user(text, text), login(text, text),
                          tick(text, text), rate(text, text, integer), forget_me(text)
    TO birdwatch_app;

-- UserAPI: its tables; its functions for the services that talk to it.
GRANT SELECT, INSERT, UPDATE, DELETE ON users, tokens TO birdwatch_user_api;
GRANT DELETE ON outbox TO birdwatch_user_api;
GRANT SELECT (user_id, sent_at, source_event) ON outbox TO birdwatch_user_api;
GRANT INSERT ON notification_skips TO birdwatch_user_api;
GRANT EXECUTE ON FUNCTION resolve_token(text) TO birdwatch_auth_api;
GRANT EXECUTE ON FUNCTION email_address(uuid) TO birdwatch_notifier, birdwatch_audit;
GRANT EXECUTE ON FUNCTION list_users(integer, integer), user_count() TO birdwatch_admin_api;
GRANT EXECUTE ON FUNCTION export_user_data(uuid) TO birdwatch_admin_api;
GRANT EXECUTE ON FUNCTION eventstore.forget_subject(text) TO birdwatch_user_api;
-- export_user_data: the person's events, through birdwatch_export alone.
GRANT eventstore_reader TO birdwatch_export;
GRANT USAGE ON SCHEMA birdwatch TO birdwatch_export;
GRANT EXECUTE ON FUNCTION user_events(uuid) TO birdwatch_user_api;

-- AuthAPI: its login sessions; TickAPI authenticates every call through it.
GRANT SELECT, INSERT, UPDATE ON login_sessions TO birdwatch_auth_api;
GRANT EXECUTE ON FUNCTION authenticate(text, text, boolean) TO birdwatch_tick_api;

-- TickAPI.
GRANT SELECT, INSERT ON ticks TO birdwatch_tick_api;
GRANT EXECUTE ON FUNCTION request_erasure(uuid) TO birdwatch_audit;

-- ScoreModel: the secret is its alone to read.
GRANT SELECT ON score_secret TO birdwatch_score_model;
GRANT SELECT, INSERT ON scored_ticks TO birdwatch_score_model;
GRANT UPDATE ON score_secret TO birdwatch_audit;

-- Notifier: its outbox; the daemon logs in as a member of birdwatch_notifier.
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox, notification_skips TO birdwatch_notifier;
GRANT SELECT, INSERT, UPDATE ON notifier_forgotten TO birdwatch_notifier;
GRANT EXECUTE ON FUNCTION email_retry_delay(integer) TO birdwatch_notifier;

-- Statistics: its tables; overview and daily for AdminAPI.
GRANT SELECT, INSERT, UPDATE, DELETE
    ON stats_seen, stats_daily, stats_ratings, stats_image_scores, stats_user_ticks,
       stats_daily_logins, stats_login_seen
    TO birdwatch_statistics;
GRANT EXECUTE ON FUNCTION overview(), daily(date, date) TO birdwatch_admin_api;

-- AdminAPI: its functions, and the consumers' status from eventstore.
GRANT EXECUTE ON FUNCTION admin_overview(), delete_user(uuid), set_score_secret(text)
    TO birdwatch_admin_api;
GRANT USAGE ON SCHEMA eventstore TO birdwatch_admin_api;
GRANT SELECT ON eventstore.consumer_status TO birdwatch_admin_api;
GRANT EXECUTE ON FUNCTION eventstore.undelivered(text) TO birdwatch_admin_api;
