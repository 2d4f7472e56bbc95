-- sql/eventstore/60_archive.sql: the analysis archive, a publication of
-- the events for logical replication, without the topics whose events
-- must not leave the store.

-- The row filter of the publication eventstore_archive: every topic
-- except those whose events must not outlive them here (a retention) or
-- carry personal fields (protect_fields).
CREATE FUNCTION archive_row_filter() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('NOT (topic = ANY (%L::text[]))',
                  coalesce(array_agg(t.name::text ORDER BY t.name), '{}'))
      FROM eventstore.topics t
     WHERE t.retention IS NOT NULL
        OR EXISTS (SELECT FROM eventstore.protections p WHERE p.topic = t.name)
$$;

-- Brings the publication's row filter up to date, when it exists.
CREATE FUNCTION refresh_archive() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_publication WHERE pubname = 'eventstore_archive') THEN
        EXECUTE format('ALTER PUBLICATION eventstore_archive SET TABLE eventstore.events WHERE (%s)',
                       eventstore.archive_row_filter());
    END IF;
END
$$;

CREATE FUNCTION publish_archive() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'eventstore_archive') THEN
        EXECUTE format('CREATE PUBLICATION eventstore_archive FOR TABLE eventstore.events WHERE (%s)'
                       ' WITH (publish = ''insert'')',
                       eventstore.archive_row_filter());
    ELSE
        PERFORM eventstore.refresh_archive();
    END IF;
END
$$;
COMMENT ON FUNCTION publish_archive() IS
    'create (or bring up to date) the publication eventstore_archive: inserts of events of every topic without retention';
