-- birdwatch 0.1 -> 1.0: the first release.
--
-- 0.1 is the development series as it stood before the release work
-- (issue 6); this script holds what that work changed in the SQL objects.
-- A fresh CREATE EXTENSION birdwatch runs birdwatch--0.1.sql and then this script,
-- so every installation, new or upgraded, goes through the same steps.
-- From 1.0 on, every change to the SQL ships as a further upgrade script
-- (1.0--1.1 and so on), never as an edit of an earlier one.

\echo Use "ALTER EXTENSION birdwatch UPDATE TO '1.0'" to load this file. \quit

------------------------------------------------------------------------------
-- pg_dump: a restore keeps the score secret.
--
-- The install script stores a random secret, and a restore runs the install
-- script before it copies the dumped secret in, which then collided with it:
-- the restored database scored with a new secret.  The table holds one
-- secret, so inserting one now replaces it (test/shell/dump_restore.sh).
------------------------------------------------------------------------------

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
REVOKE ALL ON FUNCTION replace_score_secret() FROM PUBLIC;

CREATE TRIGGER one_score_secret BEFORE INSERT ON score_secret
    FOR EACH ROW EXECUTE FUNCTION replace_score_secret();
-- End of: pg_dump.
