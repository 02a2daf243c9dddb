-- A login opens its session while the password hash runs (login.py): the row is committed before
-- the verdict, under a token nobody has been given. When the verdict is not a success the service
-- deletes that row through this function, the only DELETE the runtime role can make: a row of
-- this token, not revoked, created in the last ten minutes. So a compromised auth pod can erase
-- no session older than that from the table (revocation is an UPDATE and keeps the row).
--
-- Nobody can have cached a session whose token nobody had, so its delete notifies no replica:
-- a NOTIFY moves every replica's cache generation and would make cache fills in flight skip,
-- once per failed login. The flag is local to the discard's transaction and read only for a
-- DELETE; a revocation (UPDATE) always notifies.
CREATE OR REPLACE FUNCTION phoenix_discard_session(hash bytea) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    gone integer;
BEGIN
    PERFORM set_config('phoenix.discard', 'on', true);
    DELETE FROM phoenix_sessions
    WHERE token_hash = hash AND revoked_at IS NULL AND created_at > now() - interval '10 minutes';
    GET DIAGNOSTICS gone = ROW_COUNT;
    PERFORM set_config('phoenix.discard', '', true);
    RETURN gone > 0;
END $$;

REVOKE ALL ON FUNCTION phoenix_discard_session(bytea) FROM PUBLIC;

CREATE OR REPLACE FUNCTION phoenix_notify_session_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND coalesce(current_setting('phoenix.discard', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('phoenix_invalidate',
        json_build_object('kind', 'session', 'hash', encode(OLD.token_hash, 'hex'))::text);
    RETURN NULL;
END $$;
