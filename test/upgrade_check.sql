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
--   upgrade_check.catalog(ext)   one entry per object of ext (its members,
--                                and whatever else is in its schema) with
--                                everything that defines it, the extension
--                                itself and the roles named after it,
--                                sorted: equal output means equal
--                                installations.  An entry is a line naming
--                                the object and lines indented under it.

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

-- An ACL as sorted text: the order of its items is the order of the grants,
-- which is no part of what they grant.  NULL (the default privileges) reads
-- as "default".
CREATE FUNCTION upgrade_check.acl(a aclitem[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN a IS NULL THEN 'default'
                ELSE '{' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(a) x), '') || '}'
           END
$$;

-- The privileges pg_dump takes as the extension's own (pg_init_privs), and
-- the comment, of an object or column.
CREATE FUNCTION upgrade_check.extras(cls regclass, obj oid, sub integer) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('initprivs %s comment %L',
                  coalesce((SELECT string_agg(i.privtype::text || ':' || upgrade_check.acl(i.initprivs), ' ')
                              FROM pg_init_privs i
                             WHERE i.classoid = cls AND i.objoid = obj AND i.objsubid = sub), 'none'),
                  (SELECT d.description FROM pg_description d
                    WHERE d.classoid = cls AND d.objoid = obj AND d.objsubid = sub))
$$;

-- Text of several lines, each indented under its object by prefix.
CREATE FUNCTION upgrade_check.indent(t text, prefix text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT prefix || replace(rtrim(t, E'\n'), E'\n', E'\n' || prefix)
$$;

-- The columns of a table, view or composite type, in order, numbered
-- among the columns that are there: an upgrade that drops columns leaves
-- gaps in attnum that a fresh installation does not have, and nobody sees.
CREATE FUNCTION upgrade_check.columns(rel oid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT string_agg(format(E'\n  column %s %I %s%s%s%s%s%s acl %s %s', a.n, a.attname,
                             format_type(a.atttypid, a.atttypmod),
                             CASE WHEN a.attcollation <> 0 THEN ' collate ' || a.attcollation::regcollation END,
                             CASE WHEN a.attnotnull THEN ' not null' END,
                             ' default ' || pg_get_expr(ad.adbin, ad.adrelid),
                             CASE a.attidentity WHEN 'a' THEN ' generated always as identity'
                                                WHEN 'd' THEN ' generated by default as identity' END,
                             CASE a.attgenerated WHEN 's' THEN ' generated stored' END,
                             upgrade_check.acl(a.attacl),
                             upgrade_check.extras('pg_class', rel, a.attnum)),
                      '' ORDER BY a.attnum)
      FROM (SELECT pa.*, row_number() OVER (ORDER BY pa.attnum) AS n
              FROM pg_attribute pa
             WHERE pa.attrelid = rel AND pa.attnum > 0 AND NOT pa.attisdropped) a
      LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
$$;

-- The operators and support functions of an operator family.
CREATE FUNCTION upgrade_check.opfamily_members(family oid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT string_agg(format(E'\n  operator %s %s (%s, %s) purpose %s', o.amopstrategy,
                                              o.amopopr::regoperator, o.amoplefttype::regtype,
                                              o.amoprighttype::regtype, o.amoppurpose),
                                       '' ORDER BY o.amopstrategy, o.amoplefttype, o.amoprighttype)
                       FROM pg_amop o WHERE o.amopfamily = family), '')
        || coalesce((SELECT string_agg(format(E'\n  function %s %s (%s, %s)', p.amprocnum,
                                              p.amproc::regprocedure, p.amproclefttype::regtype,
                                              p.amprocrighttype::regtype),
                                       '' ORDER BY p.amprocnum, p.amproclefttype, p.amprocrighttype)
                       FROM pg_amproc p WHERE p.amprocfamily = family), '')
$$;

-- What defines one object, as lines indented under it.
CREATE FUNCTION upgrade_check.definition(cls regclass, obj oid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(CASE cls
    WHEN 'pg_proc'::regclass THEN
        (SELECT format(E'\n  owner %s acl %s', p.proowner::regrole, upgrade_check.acl(p.proacl))
                || CASE WHEN p.prokind IN ('f', 'p')
                        THEN E'\n' || upgrade_check.indent(pg_get_functiondef(p.oid), '    | ')
                        ELSE format(E'\n  kind %s', p.prokind) END
           FROM pg_proc p WHERE p.oid = obj)
    WHEN 'pg_class'::regclass THEN
        (SELECT format(E'\n  kind %s owner %s acl %s persistence %s options %s replica identity %s row security %s/%s',
                       c.relkind, c.relowner::regrole, upgrade_check.acl(c.relacl), c.relpersistence, c.reloptions,
                       c.relreplident, c.relrowsecurity, c.relforcerowsecurity)
                || coalesce(upgrade_check.columns(c.oid), '')
                || coalesce((SELECT string_agg(format(E'\n  constraint %I %s %s', co.conname,
                                                      pg_get_constraintdef(co.oid),
                                                      upgrade_check.extras('pg_constraint', co.oid, 0)),
                                               '' ORDER BY co.conname)
                               FROM pg_constraint co WHERE co.conrelid = c.oid), '')
                || coalesce((SELECT string_agg(format(E'\n  index %s%s %s', pg_get_indexdef(i.indexrelid),
                                                      CASE WHEN i.indisclustered THEN ' clustered' END,
                                                      upgrade_check.extras('pg_class', i.indexrelid, 0)),
                                               '' ORDER BY pg_get_indexdef(i.indexrelid))
                               FROM pg_index i WHERE i.indrelid = c.oid), '')
                || coalesce((SELECT string_agg(format(E'\n  trigger %s enabled %s %s', pg_get_triggerdef(tg.oid),
                                                      tg.tgenabled, upgrade_check.extras('pg_trigger', tg.oid, 0)),
                                               '' ORDER BY tg.tgname)
                               FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal), '')
                || coalesce((SELECT string_agg(format(E'\n  rule %s', pg_get_ruledef(r.oid)), '' ORDER BY r.rulename)
                               FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN'), '')
                || coalesce((SELECT string_agg(format(E'\n  policy %I %s %s to %s using %s check %s', po.polname,
                                                      po.polcmd, po.polpermissive, po.polroles::regrole[],
                                                      pg_get_expr(po.polqual, po.polrelid),
                                                      pg_get_expr(po.polwithcheck, po.polrelid)),
                                               '' ORDER BY po.polname)
                               FROM pg_policy po WHERE po.polrelid = c.oid), '')
                || CASE WHEN c.relkind IN ('v', 'm')
                        THEN E'\n  view\n' || upgrade_check.indent(pg_get_viewdef(c.oid), '    | ') ELSE '' END
                || coalesce((SELECT format(E'\n  sequence %s start %s increment %s min %s max %s cache %s cycle %s owned by %s',
                                           s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
                                           s.seqcache, s.seqcycle,
                                           (SELECT string_agg(format('%s.%I (%s)', d.refobjid::regclass, a.attname, d.deptype), ', ')
                                              FROM pg_depend d
                                              JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                               AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0))
                               FROM pg_sequence s WHERE s.seqrelid = c.oid), '')
           FROM pg_class c WHERE c.oid = obj)
    WHEN 'pg_type'::regclass THEN
        (SELECT format(E'\n  type %s owner %s acl %s', t.typtype, t.typowner::regrole, upgrade_check.acl(t.typacl))
                || CASE t.typtype
                   WHEN 'c' THEN coalesce(upgrade_check.columns(t.typrelid), '')
                   WHEN 'd' THEN format(E'\n  domain over %s not null %s default %s', format_type(t.typbasetype, t.typtypmod),
                                        t.typnotnull, t.typdefault)
                                 || coalesce((SELECT string_agg(format(E'\n  constraint %I %s', co.conname,
                                                                       pg_get_constraintdef(co.oid)), '' ORDER BY co.conname)
                                                FROM pg_constraint co WHERE co.contypid = t.oid), '')
                   WHEN 'e' THEN format(E'\n  labels %s', (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder)
                                                             FROM pg_enum e WHERE e.enumtypid = t.oid))
                   ELSE '' END
           FROM pg_type t WHERE t.oid = obj)
    WHEN 'pg_opclass'::regclass THEN
        (SELECT format(E'\n  method %s type %s default %s family %s owner %s',
                       (SELECT amname FROM pg_am WHERE oid = oc.opcmethod), oc.opcintype::regtype, oc.opcdefault,
                       pg_describe_object('pg_opfamily'::regclass, oc.opcfamily, 0), oc.opcowner::regrole)
                || upgrade_check.opfamily_members(oc.opcfamily)
           FROM pg_opclass oc WHERE oc.oid = obj)
    WHEN 'pg_opfamily'::regclass THEN
        (SELECT format(E'\n  owner %s', f.opfowner::regrole) || upgrade_check.opfamily_members(f.oid)
           FROM pg_opfamily f WHERE f.oid = obj)
    WHEN 'pg_namespace'::regclass THEN
        (SELECT format(E'\n  owner %s acl %s', n.nspowner::regrole, upgrade_check.acl(n.nspacl))
           FROM pg_namespace n WHERE n.oid = obj)
    END, '') || format(E'\n  %s', upgrade_check.extras(cls, obj, 0))
$$;

-- Every object of ext: its members, its schema, and the objects in its
-- schema that stand on their own (not a table's row type, an array type,
-- an index or an identity sequence), each with whether it is a member;
-- then the extension itself and the roles named after it.  The extension's
-- version is a line of its own ("extension NAME version V"), so that a
-- comparison can leave it out.  Roles belong to the cluster, not to a
-- database: they are listed, but two databases of one cluster cannot
-- differ in them.
CREATE FUNCTION upgrade_check.catalog(ext name) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    WITH x AS (
        SELECT * FROM pg_extension WHERE extname = ext
    ), objects AS (
        SELECT d.classid, d.objid
          FROM pg_depend d, x
         WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = x.oid AND d.deptype = 'e'
        UNION
        SELECT 'pg_namespace'::regclass, x.extnamespace FROM x
        UNION
        SELECT 'pg_class'::regclass, c.oid FROM pg_class c, x
         WHERE c.relnamespace = x.extnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
           AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                              AND d.objid = c.oid AND d.deptype = 'i')
        UNION
        SELECT 'pg_proc'::regclass, p.oid FROM pg_proc p, x WHERE p.pronamespace = x.extnamespace
        UNION
        SELECT 'pg_type'::regclass, t.oid FROM pg_type t, x
         WHERE t.typnamespace = x.extnamespace
           AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                              AND d.objid = t.oid AND d.deptype = 'i')
        UNION
        SELECT 'pg_opclass'::regclass, o.oid FROM pg_opclass o, x WHERE o.opcnamespace = x.extnamespace
        UNION
        SELECT 'pg_opfamily'::regclass, f.oid FROM pg_opfamily f, x WHERE f.opfnamespace = x.extnamespace
        UNION
        SELECT 'pg_operator'::regclass, o.oid FROM pg_operator o, x WHERE o.oprnamespace = x.extnamespace
    )
    SELECT line FROM (
        SELECT pg_describe_object(o.classid, o.objid, 0)
               || coalesce(' (member of ' ||
                           (SELECT string_agg(e.extname, ', ' ORDER BY e.extname)
                              FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
                             WHERE d.classid = o.classid AND d.objid = o.objid AND d.objsubid = 0
                               AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e') || ')',
                           ' (NOT A MEMBER OF ANY EXTENSION)')
               || upgrade_check.definition(o.classid, o.objid)
          FROM objects o
        UNION ALL
        SELECT format(E'extension %s owner %s schema %s relocatable %s requires %s\n  comment %L',
                      x.extname, x.extowner::regrole, x.extnamespace::regnamespace, x.extrelocatable,
                      (SELECT array_agg(e.extname ORDER BY e.extname)
                         FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
                        WHERE d.classid = 'pg_extension'::regclass AND d.objid = x.oid
                          AND d.refclassid = 'pg_extension'::regclass),
                      obj_description(x.oid, 'pg_extension'))
               || coalesce((SELECT string_agg(format(E'\n  dumps %s where %L', c.cfg::regclass, c.cond),
                                              '' ORDER BY c.cfg::regclass::text)
                              FROM unnest(x.extconfig, x.extcondition) AS c(cfg, cond)), '')
          FROM x
        UNION ALL
        SELECT format('extension %s version %s', x.extname, x.extversion) FROM x
        UNION ALL
        SELECT format(E'role %s login %s superuser %s inherit %s createrole %s createdb %s replication %s bypassrls %s connection limit %s\n  member of %s\n  comment %L',
                      r.rolname, r.rolcanlogin, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb,
                      r.rolreplication, r.rolbypassrls, r.rolconnlimit,
                      (SELECT array_agg(format('%s (admin %s)', m.roleid::regrole, m.admin_option) ORDER BY m.roleid::regrole::text)
                         FROM pg_auth_members m WHERE m.member = r.oid),
                      shobj_description(r.oid, 'pg_authid'))
          FROM pg_roles r
         WHERE r.rolname LIKE replace(ext, '_', '\_') || '\_%'
    ) lines(line)
    ORDER BY 1
$$;
