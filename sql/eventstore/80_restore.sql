-- sql/eventstore/80_restore.sql: logical backups that restore everything.
-- Which tables pg_dump holds besides the events (topics and their grants,
-- consumers and their progress, parked events, upcasters, protections),
-- how a restore meets the rows an extension's install script creates again,
-- and the rebase that gives a restored store's transaction ids a meaning in
-- the cluster it was restored into (README "Backups and restore").

-- Detecting a logical restore.  installation holds a random token that the
-- install script writes and pg_dump leaves out; dumped_installation, which
-- pg_dump holds, gets a copy of it from the install script (the update
-- from 1.3 copies it too).  A physical copy, a replica or pg_upgrade keeps
-- both tables as they are; a restored dump brings the old token beside the
-- new one its own CREATE EXTENSION wrote.
CREATE TABLE installation (
    token uuid NOT NULL PRIMARY KEY
);
COMMENT ON TABLE installation IS
    'a token of this installation; not in logical dumps';
INSERT INTO installation VALUES (pg_catalog.gen_random_uuid());

CREATE TABLE dumped_installation (
    token uuid NOT NULL PRIMARY KEY
);
COMMENT ON TABLE dumped_installation IS
    'the token of the installation the data was written in; in logical dumps, so that a restore is told apart';
SELECT pg_catalog.pg_extension_config_dump('dumped_installation', '');
INSERT INTO dumped_installation SELECT token FROM installation;
-- A backend that found the store settled asks again once this changes
-- (extension/restore.c).
CREATE FUNCTION installation_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_installation_changed';
CREATE TRIGGER installation_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON dumped_installation
    FOR EACH STATEMENT EXECUTE FUNCTION installation_changed();

-- Consumers, their members and parked events, topics with their grants
-- (the grantee arrays here, the privileges on the extension's functions as
-- pg_dump's own ACLs of extension objects), upcasters and protections.
-- One call per statement: each call rewrites the extension's catalog row.
SELECT pg_catalog.pg_extension_config_dump('topics', '');
SELECT pg_catalog.pg_extension_config_dump('consumers', '');
SELECT pg_catalog.pg_extension_config_dump('members', '');
SELECT pg_catalog.pg_extension_config_dump('parked', '');
SELECT pg_catalog.pg_extension_config_dump('batch_ids', '');
SELECT pg_catalog.pg_extension_config_dump('upcasters', '');
SELECT pg_catalog.pg_extension_config_dump('protections', '');

-- A restore first runs the install scripts again (CREATE EXTENSION), and an
-- extension such as birdwatch creates its topics, consumers, grants and
-- protections there; the dump's rows then arrive for the same keys.  The
-- dump's row wins: it replaces the one just created (a consumer with its
-- fresh members, so that the dump's members and progress come in after
-- it).  The functions that create these rows refuse an existing name
-- before they insert, so outside a restore nothing reaches this; inside an
-- extension script an insert is never a replacement.
CREATE FUNCTION in_extension_script() RETURNS boolean
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'eventstore_in_extension_script';

CREATE FUNCTION restored_row_replaces() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF eventstore.in_extension_script() THEN
        RETURN NEW;
    END IF;
    CASE TG_TABLE_NAME
    WHEN 'topics' THEN
        -- in place: upcasters and protections refer to it
        UPDATE eventstore.topics t
           SET current_major = NEW.current_major, current_minor = NEW.current_minor,
               retention = NEW.retention, created_at = NEW.created_at,
               appenders = NEW.appenders, readers = NEW.readers, erasers = NEW.erasers
         WHERE t.name = NEW.name;
        IF FOUND THEN
            RETURN NULL;
        END IF;
    WHEN 'consumers' THEN
        DELETE FROM eventstore.consumers c WHERE c.name = NEW.name;
    WHEN 'upcasters' THEN
        DELETE FROM eventstore.upcasters u
         WHERE u.topic = NEW.topic AND u.from_major = NEW.from_major;
    WHEN 'protections' THEN
        DELETE FROM eventstore.protections p WHERE p.topic = NEW.topic;
    END CASE;
    RETURN NEW;
END
$$;
CREATE TRIGGER restored_row_replaces BEFORE INSERT ON topics
    FOR EACH ROW EXECUTE FUNCTION restored_row_replaces();
CREATE TRIGGER restored_row_replaces BEFORE INSERT ON consumers
    FOR EACH ROW EXECUTE FUNCTION restored_row_replaces();
CREATE TRIGGER restored_row_replaces BEFORE INSERT ON upcasters
    FOR EACH ROW EXECUTE FUNCTION restored_row_replaces();
CREATE TRIGGER restored_row_replaces BEFORE INSERT ON protections
    FOR EACH ROW EXECUTE FUNCTION restored_row_replaces();

-- The id of the current subtransaction (pg_current_xact_id() gives the
-- top transaction's), assigned if it has none.
CREATE FUNCTION subtransaction_id() RETURNS xid8
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'eventstore_subtransaction_id';

-- The rebase.  Restored events carry the transaction ids of the cluster
-- they were appended in, and the members' progress is snapshots of that
-- cluster: consistent with each other, meaningless here.  In one
-- transaction:
--  * every member's undelivered events are found with the old ids and
--    snapshots (member_is_undelivered);
--  * events no member still needs get xid 3, visible to every snapshot of
--    this cluster (a consumer created later gets them all);
--  * the others are grouped by the members that still need them, and each
--    group gets a transaction id of this cluster: its UPDATE runs in a
--    subtransaction of its own, committed with the rebase;
--  * a member with progress gets as done snapshot this transaction's
--    snapshot (which shows the groups and hides this transaction and the
--    ones in progress) with the groups it still needs added as in
--    progress; its window is closed (the rest of it comes in the next
--    one), its floor is below the groups' first position, and a batch
--    given out and not acked is given out again.  A retiring member's
--    fence is made the same way from the groups its successors need.
--    A member that has not started keeps its start position.
-- It rewrites the xid of every restored event once.
CREATE FUNCTION rebase_restored() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g     record;
    gx    xid8;
    fl    bigint;
    snap  pg_snapshot;
BEGIN
    CREATE TEMP TABLE eventstore_rebase_needs ON COMMIT DROP AS
    SELECT e.position,
           array_agg(format('%s/%s/%s', m.consumer, m.generation, m.member)
                     ORDER BY m.consumer, m.generation, m.member) AS members
      FROM eventstore.events e
      JOIN eventstore.consumers c
        ON e.topic = ANY (c.topics) AND (c.types IS NULL OR e.type = ANY (c.types))
      JOIN eventstore.members m
        ON m.consumer = c.name
       AND m.member = eventstore.member_of(e.stream, e.id, m.member_count)
     WHERE eventstore.member_is_undelivered(m, e.position, e.xid)
     GROUP BY e.position;
    CREATE TEMP TABLE eventstore_rebase_groups (xid xid8, members text[], first bigint)
        ON COMMIT DROP;

    UPDATE eventstore.events e SET xid = '3'
     WHERE e.xid <> '3'
       AND NOT EXISTS (SELECT FROM pg_temp.eventstore_rebase_needs n WHERE n.position = e.position);
    FOR g IN SELECT n.members, array_agg(n.position) AS positions, min(n.position) AS first
               FROM pg_temp.eventstore_rebase_needs n GROUP BY n.members ORDER BY min(n.position) LOOP
        BEGIN
            gx := eventstore.subtransaction_id();
            UPDATE eventstore.events e SET xid = gx WHERE e.position = ANY (g.positions);
            INSERT INTO pg_temp.eventstore_rebase_groups VALUES (gx, g.members, g.first);
        EXCEPTION WHEN no_data_found THEN
            RAISE;  -- only the subtransaction is wanted
        END;
    END LOOP;

    -- the floor first: every event the snapshot does not show is above it
    fl := eventstore.window_floor();
    snap := eventstore.window_snapshot();
    UPDATE eventstore.members m
       SET done_snapshot = r.done, done_floor = r.done_floor,
           window_snapshot = NULL, window_after = NULL, window_floor = NULL,
           batch_kind = nullif(m.batch_kind, 'window'),
           batch_upto = CASE WHEN m.batch_kind = 'window' THEN NULL ELSE m.batch_upto END,
           leased_until = CASE WHEN m.batch_kind = 'window' THEN NULL ELSE m.leased_until END
      FROM (SELECT o.consumer, o.generation, o.member,
                   eventstore.snapshot_with(snap, array_agg(x.xid) FILTER (WHERE x.xid IS NOT NULL)) AS done,
                   CASE WHEN fl IS NOT NULL THEN least(fl, min(x.first) - 1) END AS done_floor
              FROM eventstore.members o
              LEFT JOIN pg_temp.eventstore_rebase_groups x
                ON format('%s/%s/%s', o.consumer, o.generation, o.member) = ANY (x.members)
             WHERE o.done_snapshot IS NOT NULL OR o.window_snapshot IS NOT NULL
             GROUP BY o.consumer, o.generation, o.member) r
     WHERE (m.consumer, m.generation, m.member) = (r.consumer, r.generation, r.member);
    -- a fence hides what the newest generation is to deliver
    UPDATE eventstore.members m
       SET fence_snapshot = r.fence, fence_floor = r.fence_floor
      FROM (SELECT c.name AS consumer,
                   eventstore.snapshot_with(snap, array_agg(x.xid) FILTER (WHERE x.xid IS NOT NULL)) AS fence,
                   CASE WHEN fl IS NOT NULL THEN least(fl, min(x.first) - 1) END AS fence_floor
              FROM eventstore.consumers c
              LEFT JOIN pg_temp.eventstore_rebase_groups x
                ON EXISTS (SELECT FROM eventstore.members n
                            WHERE n.consumer = c.name AND n.fence_snapshot IS NULL
                              AND format('%s/%s/%s', n.consumer, n.generation, n.member) = ANY (x.members))
             GROUP BY c.name) r
     WHERE m.consumer = r.consumer AND m.fence_snapshot IS NOT NULL;
END
$$;

-- snap with the transactions xids added as in progress (NULL xids: none).
CREATE FUNCTION snapshot_with(snap pg_snapshot, xids xid8[]) RETURNS pg_snapshot
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF snap IS NULL OR coalesce(cardinality(xids), 0) = 0 THEN
        RETURN snap;
    END IF;
    RETURN format('%s:%s:%s',
                  least(pg_snapshot_xmin(snap), (SELECT min(x) FROM unnest(xids) x)),
                  greatest(pg_snapshot_xmax(snap)::text::numeric,
                           (SELECT max(x) FROM unnest(xids) x)::text::numeric + 1),
                  (SELECT string_agg(x::text, ',' ORDER BY x)
                     FROM (SELECT pg_snapshot_xip(snap) UNION SELECT unnest(xids)) AS xs(x)))::pg_snapshot;
END
$$;

-- Called by the first append or consumer call of a backend
-- (extension/restore.c), as the extension's owner: in a restored database
-- (a token other than this installation's in dumped_installation), rebases
-- once, under a lock, so that a second caller finds it done.  Returns true
-- when it found the store settled (no other token, nothing written: the
-- common case takes no lock and writes nothing, so that concurrent first
-- appends never wait for each other), which the backend then remembers.
CREATE FUNCTION rebase_if_restored() RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    local uuid := (SELECT i.token FROM eventstore.installation i);
BEGIN
    IF NOT EXISTS (SELECT FROM eventstore.dumped_installation d WHERE d.token <> local) THEN
        RETURN true;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('eventstore.rebase_restored'));
    IF NOT EXISTS (SELECT FROM eventstore.dumped_installation d WHERE d.token <> local) THEN
        RETURN false;
    END IF;
    PERFORM eventstore.rebase_restored();
    DELETE FROM eventstore.dumped_installation;
    INSERT INTO eventstore.dumped_installation VALUES (local);
    RAISE LOG 'eventstore: a restored store was rebased onto the transaction ids of this cluster';
    RETURN false;
END
$$;
