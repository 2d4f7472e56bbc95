-- test/upgrade_check.sql: what test/shell/upgrade.sh compares, as functions
-- in a schema of their own (upgrade_check), loaded into each database the
-- test uses.
--
--   upgrade_check.snapshot()     copies every table of both extensions
--   upgrade_check.changed()      the tables whose rows differ from the copy,
--                                over the columns both have (a step may add
--                                columns; it may not change or lose rows).
--                                Topics and upcasters are configuration
--                                that a release may migrate: catalog()
--                                compares them with a fresh installation.
--   upgrade_check.catalog(ext)   one line per member object of ext with its
--                                definition, owner and privileges, sorted:
--                                equal lines mean equal installations

CREATE SCHEMA upgrade_check;

-- The ordinary tables that belong to eventstore or birdwatch.
CREATE FUNCTION upgrade_check.extension_tables()
RETURNS TABLE (rel regclass, copy_name text)
LANGUAGE sql STABLE AS $$
    SELECT c.oid::regclass, n.nspname || '__' || c.relname
      FROM pg_depend d
      JOIN pg_extension x ON x.oid = d.refobjid
      JOIN pg_class c ON c.oid = d.objid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE d.refclassid = 'pg_extension'::regclass
       AND d.classid = 'pg_class'::regclass
       AND d.deptype = 'e'
       AND x.extname IN ('eventstore', 'birdwatch')
       AND c.relkind = 'r'
       AND (n.nspname, c.relname) NOT IN (('eventstore', 'topics'), ('eventstore', 'upcasters'))
$$;

CREATE FUNCTION upgrade_check.snapshot() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t record;
    n integer := 0;
BEGIN
    FOR t IN SELECT * FROM upgrade_check.extension_tables() LOOP
        EXECUTE format('DROP TABLE IF EXISTS upgrade_check.%I', t.copy_name);
        EXECUTE format('CREATE TABLE upgrade_check.%I AS SELECT * FROM %s', t.copy_name, t.rel);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Rows compared as text, column by column: some column types (pg_snapshot)
-- have no equality operator.
CREATE FUNCTION upgrade_check.changed() RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    t       record;
    live    regclass;
    columns text;
    differ  bigint;
BEGIN
    FOR t IN SELECT c.relname AS copy_name
               FROM pg_class c
              WHERE c.relnamespace = 'upgrade_check'::regnamespace AND c.relkind = 'r'
              ORDER BY 1 LOOP
        live := to_regclass(format('%I.%I', split_part(t.copy_name, '__', 1),
                                   split_part(t.copy_name, '__', 2)));
        IF live IS NULL THEN
            RETURN NEXT t.copy_name || ': table gone';
            CONTINUE;
        END IF;
        SELECT string_agg(format('%I::text', a.attname), ', ' ORDER BY a.attnum)
          INTO columns
          FROM pg_attribute a
         WHERE a.attrelid = format('upgrade_check.%I', t.copy_name)::regclass
           AND a.attnum > 0 AND NOT a.attisdropped
           AND EXISTS (SELECT FROM pg_attribute l
                        WHERE l.attrelid = live AND l.attname = a.attname
                          AND NOT l.attisdropped);
        EXECUTE format('SELECT count(*) FROM ((SELECT %1$s FROM upgrade_check.%2$I EXCEPT ALL SELECT %1$s FROM %3$s)
                                              UNION ALL
                                              (SELECT %1$s FROM %3$s EXCEPT ALL SELECT %1$s FROM upgrade_check.%2$I)) d',
                       columns, t.copy_name, live)
          INTO differ;
        IF differ > 0 THEN
            RETURN NEXT format('%s: %s rows differ', live, differ);
        END IF;
    END LOOP;
END
$$;

-- One line per member object: what it is, and what defines it.
CREATE FUNCTION upgrade_check.catalog(ext name) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    WITH members AS (
        SELECT d.classid, d.objid
          FROM pg_depend d
          JOIN pg_extension x ON x.oid = d.refobjid
         WHERE d.refclassid = 'pg_extension'::regclass
           AND d.deptype = 'e'
           AND x.extname = ext
    )
    SELECT pg_describe_object(m.classid, m.objid, 0) || E'\n  ' ||
           coalesce(
               CASE m.classid
                   WHEN 'pg_proc'::regclass THEN
                       (SELECT format('owner %s acl %s config %s%s', p.proowner::regrole, p.proacl,
                                      p.proconfig,
                                      CASE WHEN p.prokind IN ('f', 'p')
                                           THEN E'\n' || pg_get_functiondef(p.oid) END)
                          FROM pg_proc p WHERE p.oid = m.objid)
                   WHEN 'pg_class'::regclass THEN
                       (SELECT format('kind %s owner %s acl %s options %s', c.relkind, c.relowner::regrole,
                                      c.relacl, c.reloptions)
                               || coalesce(E'\n  columns ' ||
                                  (SELECT string_agg(format('%I %s%s%s', a.attname,
                                                            format_type(a.atttypid, a.atttypmod),
                                                            CASE WHEN a.attnotnull THEN ' not null' END,
                                                            ' default ' || pg_get_expr(ad.adbin, ad.adrelid)),
                                                     ', ' ORDER BY a.attnum)
                                     FROM pg_attribute a
                                     LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                                    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
                               || coalesce(E'\n  constraints ' ||
                                  (SELECT string_agg(format('%I %s', co.conname, pg_get_constraintdef(co.oid)),
                                                     ', ' ORDER BY co.conname)
                                     FROM pg_constraint co WHERE co.conrelid = c.oid), '')
                               || coalesce(E'\n  indexes ' ||
                                  (SELECT string_agg(pg_get_indexdef(i.indexrelid), ', ' ORDER BY 1)
                                     FROM pg_index i WHERE i.indrelid = c.oid), '')
                               || coalesce(E'\n  triggers ' ||
                                  (SELECT string_agg(pg_get_triggerdef(tg.oid), ', ' ORDER BY 1)
                                     FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal), '')
                               || coalesce(E'\n  view ' ||
                                  CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END, '')
                          FROM pg_class c WHERE c.oid = m.objid)
                   WHEN 'pg_type'::regclass THEN
                       (SELECT format('owner %s acl %s', t.typowner::regrole, t.typacl)
                          FROM pg_type t WHERE t.oid = m.objid)
               END, '')
      FROM members m
     ORDER BY 1
$$;
