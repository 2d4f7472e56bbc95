-- sql/eventstore/20_topics.sql: creating topics, and the per-topic
-- privileges (grant_topic, revoke_topic) with the checks that consumers and
-- upcasters use to see whether a role may read a topic.

CREATE FUNCTION create_topic(name text,
                             current_version text DEFAULT '1.0',
                             retention interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts text[];
BEGIN
    IF name IS NULL OR name !~ '^[a-z][a-z0-9_]*$' OR length(name) > 63 THEN
        RAISE EXCEPTION 'invalid topic name'
            USING ERRCODE = 'invalid_name',
                  DETAIL = format('Topic name %L must match ^[a-z][a-z0-9_]*$ and be at most 63 characters.', name);
    END IF;
    parts := regexp_match(current_version, '^(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})$');
    IF parts IS NULL OR parts[1]::bigint > 2147483647 OR parts[2]::bigint > 2147483647 THEN
        RAISE EXCEPTION 'invalid topic version'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Version %L must be "MAJOR.MINOR" with non-negative integers without signs, spaces or leading zeros.', current_version);
    END IF;
    IF retention IS NOT NULL AND retention <= interval '0' THEN
        RAISE EXCEPTION 'invalid topic retention'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Retention %s must be a positive interval or NULL.', retention);
    END IF;
    -- refused before the insert, which a restore's trigger would make a
    -- replacement (80_restore.sql)
    IF EXISTS (SELECT FROM eventstore.topics t WHERE t.name = create_topic.name) THEN
        RAISE unique_violation;
    END IF;
    INSERT INTO eventstore.topics (name, current_major, current_minor, retention)
    VALUES (name, parts[1]::integer, parts[2]::integer, retention);
    IF retention IS NOT NULL THEN
        PERFORM eventstore.refresh_archive();
    END IF;
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'topic "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  DETAIL = format('Topic %L is at version %s.', name,
                                  (SELECT t.current_major || '.' || t.current_minor
                                     FROM eventstore.topics t WHERE t.name = create_topic.name));
END
$$;
COMMENT ON FUNCTION create_topic(text, text, interval) IS
    'create a topic; events can only be appended to existing topics';

-- Per-topic privileges.  Members of eventstore_writer may append to every
-- topic and members of eventstore_reader read every topic; grant_topic()
-- gives a role one privilege on one topic, so that a service can be confined
-- to what it produces and consumes.  "read" lets the role consume the topic
-- (as a consumer's run_as, or an upcaster's registrar); the ad hoc read
-- functions stay with eventstore_reader.  The functions a privilege needs
-- are granted along with it and revoked with its role's last grant.
CREATE FUNCTION check_topic_grant_args(topic text, privilege text, grantee regrole)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF topic IS NULL THEN
        RAISE EXCEPTION 'topic must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "topic" is NULL.';
    END IF;
    IF privilege IS NULL OR privilege NOT IN ('append', 'read', 'erase') THEN
        RAISE EXCEPTION 'invalid topic privilege'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "privilege" is %s; it must be ''append'', ''read'' or ''erase''.',
                                  coalesce(quote_literal(privilege), 'NULL'));
    END IF;
    IF grantee IS NULL OR grantee::oid = 0 THEN
        RAISE EXCEPTION 'invalid topic grantee'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Argument "grantee" must name a role.';
    END IF;
    IF NOT EXISTS (SELECT FROM eventstore.topics t WHERE t.name = topic) THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object',
                  HINT = format('Create it with eventstore.create_topic(%L).', topic);
    END IF;
END
$$;

-- The column of eventstore.topics that lists a privilege's grantees.
CREATE FUNCTION topic_privilege_column(privilege text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE privilege WHEN 'append' THEN 'appenders' WHEN 'read' THEN 'readers'
                          WHEN 'erase' THEN 'erasers' END
$$;

-- The functions that come with a privilege, as a GRANT/REVOKE object list.
CREATE FUNCTION topic_privilege_functions(privilege text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE privilege
        WHEN 'append' THEN 'eventstore.append(text, jsonb, text, bigint), '
                           'eventstore.append_batch(text, jsonb[], text, bigint), '
                           'eventstore.validate(jsonb), eventstore.is_valid(jsonb), '
                           'eventstore.derived_id(uuid, text)'
        WHEN 'read' THEN 'eventstore.poll(text, integer, integer), eventstore.ack(text, bigint), '
                         'eventstore.nack(text, bigint, text), eventstore.upcast(eventstore.event), '
                         'eventstore.unprotect(eventstore.event), eventstore.derived_id(uuid, text)'
        WHEN 'erase' THEN 'eventstore.erase_stream(text, text), '
                          'eventstore.truncate_stream(text, text, bigint), '
                          'eventstore.set_stream_max_count(text, text, bigint)'
    END
$$;

-- The privileges role holds on some topic through grant_topic.
CREATE FUNCTION topic_privileges_of(role regrole) RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(SELECT p FROM unnest(ARRAY['append', 'read', 'erase']) AS p
                  WHERE EXISTS (SELECT FROM eventstore.topics t
                                 WHERE role = ANY (CASE p WHEN 'append' THEN t.appenders
                                                          WHEN 'read' THEN t.readers
                                                          ELSE t.erasers END)))
$$;

CREATE FUNCTION grant_topic(topic text, privilege text, grantee regrole) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.check_topic_grant_args(topic, privilege, grantee);
    EXECUTE format('UPDATE eventstore.topics t SET %1$I = array_append(t.%1$I, $1)'
                   ' WHERE t.name = $2 AND NOT $1 = ANY (t.%1$I)',
                   eventstore.topic_privilege_column(privilege))
        USING grantee, topic;
    EXECUTE format('GRANT USAGE ON SCHEMA eventstore TO %s', grantee::text);
    EXECUTE format('GRANT USAGE ON TYPE eventstore.event, eventstore.delivery TO %s', grantee::text);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s',
                   eventstore.topic_privilege_functions(privilege), grantee::text);
    -- The view of streams shows a role the streams of the topics it may
    -- read, and only those.
    IF privilege = 'read' THEN
        EXECUTE format('GRANT SELECT ON eventstore.streams TO %s', grantee::text);
    END IF;
    -- The inbox checks each row's topic as append does.
    IF privilege = 'append' THEN
        EXECUTE format('GRANT INSERT ON eventstore.inbox TO %s', grantee::text);
    END IF;
EXCEPTION
    WHEN check_violation THEN
        RAISE EXCEPTION 'too many grantees of % on topic "%"', privilege, topic
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = 'A topic has at most 16 grantees per privilege.',
                  HINT = 'Grant the privilege to a group role and make the roles its members.';
END
$$;
COMMENT ON FUNCTION grant_topic(text, text, regrole) IS
    'let a role append to (''append''), consume (''read'') or erase streams of (''erase'') one topic, with the functions that needs';

CREATE FUNCTION revoke_topic(topic text, privilege text, grantee regrole) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed integer;
    held    text[];
    p       text;
BEGIN
    PERFORM eventstore.check_topic_grant_args(topic, privilege, grantee);
    EXECUTE format('UPDATE eventstore.topics t SET %1$I = array_remove(t.%1$I, $1)'
                   ' WHERE t.name = $2 AND $1 = ANY (t.%1$I)',
                   eventstore.topic_privilege_column(privilege))
        USING grantee, topic;
    GET DIAGNOSTICS removed = ROW_COUNT;
    IF removed = 0 THEN
        RETURN;
    END IF;
    -- The functions go with the role's last grant of the privilege; some
    -- (derived_id) come with several privileges, so those the role still
    -- holds are granted again.
    held := eventstore.topic_privileges_of(grantee);
    IF privilege = ANY (held) THEN
        RETURN;
    END IF;
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM %s',
                   eventstore.topic_privilege_functions(privilege), grantee::text);
    IF privilege = 'read' THEN
        EXECUTE format('REVOKE SELECT ON eventstore.streams FROM %s', grantee::text);
    END IF;
    IF privilege = 'append' THEN
        EXECUTE format('REVOKE INSERT ON eventstore.inbox FROM %s', grantee::text);
    END IF;
    FOREACH p IN ARRAY held LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s',
                       eventstore.topic_privilege_functions(p), grantee::text);
    END LOOP;
    IF cardinality(held) = 0 THEN
        EXECUTE format('REVOKE USAGE ON TYPE eventstore.event, eventstore.delivery FROM %s',
                       grantee::text);
        EXECUTE format('REVOKE USAGE ON SCHEMA eventstore FROM %s', grantee::text);
    END IF;
END
$$;
COMMENT ON FUNCTION revoke_topic(text, text, regrole) IS
    'take back a privilege given by grant_topic, and its functions with the role''s last grant';

-- The first of topics that role may not consume, or NULL when it may
-- consume them all: it may if it has the privileges of eventstore_reader or
-- of a role granted read on the topic (extension/catalog.c, from the topic
-- cache: a consumer checks this on every batch).
CREATE FUNCTION unreadable_topic(role oid, topics text[]) RETURNS text
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'eventstore_unreadable_topic';

-- Raises 42501 naming the first topic role may not consume; what says who
-- the role is ("the consumer's role").
CREATE FUNCTION check_topics_readable(role oid, topics text[], what text) RETURNS void
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'eventstore_check_topics_readable';
