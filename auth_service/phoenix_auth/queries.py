"""Every SQL statement the service sends, in one place.

`db.py` sends them and `migrations.py` proves with EXPLAIN that the hot ones (login, session check,
user by id) are answered from the seed's indexes. Both import them from here, so the statement
that is proved is the statement that is sent: a change to one of these strings is re-proved by the
next `phoenix-auth migrate` and by the integration tests.
"""

from __future__ import annotations

# The covering index's columns, nothing else (index-only scan).
SQL_AUTH_RECORD = (
    "SELECT id, email, name, role, hashed_password, team_name, disabled, password_changed_at "
    "FROM users WHERE lower(email) = %s"
)
# Session checks never need the hash: these columns are those of idx_users_id_session_data (index-only).
SQL_USER_BY_ID = (
    "SELECT id, email, name, role, NULL::text, team_name, disabled, password_changed_at "
    "FROM users WHERE id = %s"
)
# Creating the session re-checks, in the same statement, that the user is still enabled and still
# has the hash we verified against: a login can never succeed from a stale cache entry.
SQL_INSERT_SESSION = (
    "WITH u AS (SELECT id, email, name, role, team_name FROM users "
    "WHERE id = %s AND NOT disabled AND hashed_password = %s), "
    "ins AS (INSERT INTO phoenix_sessions (token_hash, user_id, expires_at, client_ip, user_agent) "
    "SELECT %s, u.id, to_timestamp(%s), %s::inet, %s FROM u RETURNING user_id) "
    "SELECT u.email, u.name, u.role, u.team_name FROM u JOIN ins ON ins.user_id = u.id"
)
# A session opened while its hash ran whose login did not succeed (0002_discard_session.sql).
SQL_DISCARD_SESSION = "SELECT phoenix_discard_session(%s)"
SQL_SESSION = (
    "SELECT s.user_id, s.expires_at, s.revoked_at IS NOT NULL, s.created_at, "
    "u.id, u.email, u.name, u.role, u.team_name, u.disabled, u.password_changed_at "
    "FROM phoenix_sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = %s"
)
SQL_REVOKE_SESSION = (
    "UPDATE phoenix_sessions SET revoked_at = now() "
    "WHERE token_hash = %s AND revoked_at IS NULL RETURNING user_id"
)
SQL_REVOKE_USER_SESSIONS = (
    "UPDATE phoenix_sessions SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL "
    "RETURNING token_hash"
)
SQL_USER_EXISTS = "SELECT 1 FROM users WHERE id = %s"
# The same password re-hashed is not a password change: the flag (local to this statement's
# transaction) tells the schema's trigger not to move password_changed_at and end sessions.
SQL_REHASH = (
    "WITH flag AS (SELECT set_config('phoenix.rehash', 'on', true)) "
    "UPDATE users SET hashed_password = %s, updated_at = now() FROM flag "
    "WHERE id = %s AND hashed_password = %s"
)
SQL_PING = "SELECT 1"
# Whether this role may discard a session it opened (a database migrated before 0002, or a runtime
# role granted by older docs, may not): CASE, because has_function_privilege fails on a missing one.
SQL_CAN_DISCARD = (
    "SELECT CASE WHEN to_regprocedure('phoenix_discard_session(bytea)') IS NULL THEN false "
    "ELSE has_function_privilege('phoenix_discard_session(bytea)', 'EXECUTE') END"
)
# The kinds of password hash enabled users have (passwords.hash_kind parses each prefix): bcrypt
# by cost, argon2 by parameters. A full scan (~0.3 s per million rows here), so it runs at
# start-up and hourly, under its own statement timeout, and is kept out of the query histogram.
SQL_HASH_KINDS = (
    "SELECT DISTINCT CASE WHEN left(hashed_password, 2) = '$2' THEN left(hashed_password, 7) "
    "ELSE '$' || split_part(hashed_password, '$', 2) || '$' || split_part(hashed_password, '$', 3) "
    "|| '$' || split_part(hashed_password, '$', 4) END "
    "FROM users WHERE hashed_password IS NOT NULL AND NOT disabled"
)
