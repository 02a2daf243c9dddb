-- Phoenix auth schema. Idempotent: safe on a fresh database and on an existing users table
-- (a NextAuth/Prisma app's, holding bcrypt hashes): missing columns are added, nothing is dropped.
-- Indexes are NOT here: they are built CONCURRENTLY by `phoenix-auth migrate` (migrations.py).

CREATE TABLE IF NOT EXISTS users (
    id                  text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    email               text NOT NULL,
    name                text,
    role                text NOT NULL DEFAULT 'user',
    hashed_password     text,
    team_name           text,
    disabled            boolean NOT NULL DEFAULT false,
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE users ADD COLUMN IF NOT EXISTS name text;
ALTER TABLE users ADD COLUMN IF NOT EXISTS role text NOT NULL DEFAULT 'user';
ALTER TABLE users ADD COLUMN IF NOT EXISTS hashed_password text;
ALTER TABLE users ADD COLUMN IF NOT EXISTS team_name text;
ALTER TABLE users ADD COLUMN IF NOT EXISTS disabled boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN IF NOT EXISTS password_changed_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE users ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE users ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();

-- Sessions: only a SHA-256 of the opaque token is stored, never the token.
CREATE TABLE IF NOT EXISTS phoenix_sessions (
    token_hash  bytea PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    client_ip   inet,
    user_agent  text
);
CREATE INDEX IF NOT EXISTS phoenix_sessions_user_id ON phoenix_sessions (user_id);
CREATE INDEX IF NOT EXISTS phoenix_sessions_expires_at ON phoenix_sessions (expires_at);

-- Cache invalidation: any write to users (by Phoenix or by another app) or to sessions
-- notifies every replica, which drops the entry from L1 and L2.
CREATE OR REPLACE FUNCTION phoenix_notify_user_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('phoenix_invalidate',
            json_build_object('kind', 'user', 'id', OLD.id, 'email', lower(OLD.email))::text);
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        PERFORM pg_notify('phoenix_invalidate',
            json_build_object('kind', 'user', 'id', OLD.id, 'email', lower(OLD.email))::text);
        IF lower(NEW.email) IS DISTINCT FROM lower(OLD.email) THEN
            PERFORM pg_notify('phoenix_invalidate',
                json_build_object('kind', 'user', 'id', NEW.id, 'email', lower(NEW.email))::text);
        END IF;
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS phoenix_users_invalidate ON users;
CREATE TRIGGER phoenix_users_invalidate
    AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION phoenix_notify_user_change();

-- A password change made by anyone (Phoenix or another app's plain UPDATE) moves
-- password_changed_at, and sessions created before it stop being valid. Phoenix's own
-- bcrypt -> argon2id rehash of the same password sets `phoenix.rehash` for its statement and
-- leaves it alone; a writer that sets password_changed_at itself is believed.
CREATE OR REPLACE FUNCTION phoenix_password_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.hashed_password IS DISTINCT FROM OLD.hashed_password
       AND NEW.password_changed_at IS NOT DISTINCT FROM OLD.password_changed_at
       AND coalesce(current_setting('phoenix.rehash', true), '') <> 'on' THEN
        NEW.password_changed_at := clock_timestamp();
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS phoenix_users_password_changed ON users;
CREATE TRIGGER phoenix_users_password_changed
    BEFORE UPDATE OF hashed_password ON users
    FOR EACH ROW EXECUTE FUNCTION phoenix_password_changed();

CREATE OR REPLACE FUNCTION phoenix_notify_session_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('phoenix_invalidate',
        json_build_object('kind', 'session', 'hash', encode(OLD.token_hash, 'hex'))::text);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS phoenix_sessions_invalidate ON phoenix_sessions;
CREATE TRIGGER phoenix_sessions_invalidate
    AFTER UPDATE OR DELETE ON phoenix_sessions
    FOR EACH ROW EXECUTE FUNCTION phoenix_notify_session_change();
