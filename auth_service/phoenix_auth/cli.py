"""`phoenix-auth`: serve, migrate, user and session administration, demo data.

Exit codes (stable; the operator's migration Job and scripts rely on them):

    0  success
    1  failure (database error, index build failed, schema could not be applied, seed failed)
    2  usage or configuration error (bad arguments, invalid PHOENIX_*/DATABASE_URL, invalid input)
    3  database unreachable (retry later)
    4  another migration holds the migration lock, or a lock timeout hit (retry later)
    5  emails that differ only in case block the unique login index (fix the data, then migrate)
    6  the login query does not use idx_users_email_auth_covering after migrate
    7  user not found
    8  user already exists

Passwords are never taken as a plain argument (they would land in shell history and `ps`): they
come from `--password-stdin`, the PHOENIX_NEW_PASSWORD environment variable, or a prompt.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from typing import TextIO

import psycopg
from pydantic import ValidationError

from . import migrations, users_admin
from .seed_demo import DEMO_PASSWORD, SEED_TEST_EMAIL, SEED_TEST_PASSWORD, SeedError
from .settings import Settings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DB_UNREACHABLE = 3
EXIT_LOCKED = 4
EXIT_DUPLICATE_EMAILS = 5
EXIT_INDEX_NOT_USED = 6
EXIT_NOT_FOUND = 7
EXIT_EXISTS = 8

PASSWORD_ENV = "PHOENIX_NEW_PASSWORD"  # noqa: S105 - a variable name, not a secret
_SECRET_FIELDS = {"database_url", "redis_url", "admin_token", "cache_signing_key"}

# Most specific first: the first matching class decides the exit code.
_EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (migrations.MigrationLockTimeout, EXIT_LOCKED),
    (migrations.DuplicateEmails, EXIT_DUPLICATE_EMAILS),
    (migrations.IndexNotUsed, EXIT_INDEX_NOT_USED),
    (migrations.UnknownIndexSet, EXIT_USAGE),
    (migrations.MigrationError, EXIT_FAILURE),
    (users_admin.UserNotFound, EXIT_NOT_FOUND),
    (users_admin.UserExists, EXIT_EXISTS),
    (users_admin.UserAdminError, EXIT_USAGE),  # invalid email/role/name/password
    (SeedError, EXIT_FAILURE),
)


class UsageError(Exception):
    """The command line cannot be carried out as given (exit 2)."""


class DatabaseUnreachable(Exception):
    """No connection to DATABASE_URL (exit 3)."""


# --------------------------------------------------------------------------- helpers


def format_settings_error(exc: ValidationError) -> str:
    """One line per problem, naming the environment variable; secret values are never echoed."""
    lines = ["invalid configuration:"]
    for err in exc.errors(include_url=False):
        loc = err.get("loc") or ()
        field = str(loc[0]) if loc else ""
        if not field:
            env = ""
        elif field.isupper():
            env = field  # an alias such as DATABASE_URL
        else:
            env = f"PHOENIX_{field.upper()}"
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        shown = ""
        if field and field.lower() not in _SECRET_FIELDS and isinstance(err.get("input"), str | int | float):
            shown = f" (got {err['input']!r})"
        lines.append(f"  {env + ': ' if env else ''}{msg}{shown}")
    return "\n".join(lines)


def _connect(settings: Settings, autocommit: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(
            settings.database_url.get_secret_value(),
            autocommit=autocommit,
            connect_timeout=10,
            application_name="phoenix-auth cli",
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnreachable(f"cannot connect to the database (DATABASE_URL): {exc}".strip()) from exc


def _read_password(args: argparse.Namespace, stdin: TextIO) -> str:
    if args.password_stdin:
        line = stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin given but stdin held no password")
        return password
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    if stdin.isatty():
        first = getpass.getpass("New password: ")
        if first != getpass.getpass("Repeat password: "):
            raise UsageError("the passwords did not match")
        return first
    raise UsageError(f"no password given: use --password-stdin, set {PASSWORD_ENV}, or run in a terminal")


def _user_ref(args: argparse.Namespace) -> users_admin.UserRef:
    if args.email is not None:
        return users_admin.UserRef(email=args.email)
    return users_admin.UserRef(user_id=args.user_id)


def _describe(user: users_admin.UserRecord) -> str:
    return (
        f"{user.email} (id {user.id}, role {user.role}, team {user.team_name or '-'}"
        f"{', DISABLED' if user.disabled else ''})"
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("seconds must be >= 0 (0 = no limit)")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _count(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


# --------------------------------------------------------------------------- commands


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from .server import run  # lazy: the HTTP stack is only needed here

    run(settings)
    return EXIT_OK


def cmd_drain(args: argparse.Namespace, settings: Settings) -> int:
    from .drain import drain

    drain(args.seconds)
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    options = migrations.MigrateOptions(
        index_set=args.index_set,
        lock_timeout=args.lock_timeout,
        statement_timeout=args.statement_timeout,
        lock_wait=args.lock_wait,
        progress_interval=args.progress_interval,
        vacuum=not args.no_vacuum,
    )

    def log(line: str) -> None:
        print(line, flush=True)

    conninfo = settings.database_url.get_secret_value()
    with _connect(settings, autocommit=True) as conn:
        migrator = migrations.Migrator(conn, options, log, conninfo=conninfo)
        report = migrator.rollback() if args.rollback else migrator.migrate()
    if not args.rollback:
        log(migrations.summary(report))
    return EXIT_OK


def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    action = args.user_action
    if action == "delete" and not args.yes:
        raise UsageError("refusing to delete without --yes (the user's sessions are deleted with it)")
    with _connect(settings) as conn:
        if action == "create":
            from .passwords import PasswordHasher

            users_admin.normalise_email(args.email)  # fail on a bad email before asking for a password
            users_admin.check_role(args.role)
            password = _read_password(args, sys.stdin)
            hasher = PasswordHasher(settings)
            try:
                user = users_admin.create_user(
                    conn,
                    hasher,
                    email=args.email,
                    password=password,
                    max_password_bytes=settings.max_password_bytes,
                    name=args.name,
                    role=args.role,
                    team=args.team,
                )
            finally:
                hasher.close()
            print(f"created user {_describe(user)}")
        elif action == "set-password":
            from .passwords import PasswordHasher

            ref = _user_ref(args)
            password = _read_password(args, sys.stdin)
            hasher = PasswordHasher(settings)
            try:
                user, revoked = users_admin.set_password(
                    conn, hasher, ref, password, settings.max_password_bytes, revoke=not args.keep_sessions
                )
            finally:
                hasher.close()
            ended = "kept" if args.keep_sessions else f"{revoked} active session(s) revoked"
            print(f"password changed for {_describe(user)}; {ended}; replicas notified to drop cached copies")
        elif action in ("disable", "enable"):
            user = users_admin.set_disabled(conn, _user_ref(args), disabled=action == "disable")
            print(f"{action}d user {_describe(user)}")
        elif action == "delete":
            user = users_admin.delete_user(conn, _user_ref(args))
            print(f"deleted user {user.email} (id {user.id}) and their sessions")
        else:  # pragma: no cover - argparse restricts the choices
            raise UsageError(f"unknown user action {action!r}")
    return EXIT_OK


def cmd_sessions(args: argparse.Namespace, settings: Settings) -> int:
    with _connect(settings) as conn:
        user, count = users_admin.revoke_sessions(conn, _user_ref(args))
    print(f"revoked {count} active session(s) of {user.email} (id {user.id})")
    return EXIT_OK


def cmd_seed_demo(args: argparse.Namespace, settings: Settings) -> int:
    from .passwords import PasswordHasher
    from .seed_demo import seed_demo

    def log(line: str) -> None:
        print(line, flush=True)

    hasher = PasswordHasher(settings)
    try:
        with _connect(settings) as conn:
            report = seed_demo(
                conn,
                hasher,
                args.count,
                bcrypt_fraction=args.bcrypt_fraction,
                batch_rows=args.batch_rows,
                log=log,
            )
    finally:
        hasher.close()
    print(
        f"seed-demo complete: {report.inserted} inserted, {report.skipped} already present"
        f"{f', {report.bcrypt_rows} with bcrypt hashes' if report.bcrypt_rows else ''} "
        f"in {report.seconds:.1f}s"
    )
    print(
        f"demo users: user1@demo.phoenix.dev .. user{args.count}@demo.phoenix.dev, password: {DEMO_PASSWORD}"
    )
    print(f"seed user: {SEED_TEST_EMAIL}, password: {SEED_TEST_PASSWORD}")
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def _add_user_ref(parser: argparse.ArgumentParser) -> None:
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--email", help="the user's email (case-insensitive)")
    who.add_argument("--user-id", help="the user's id")


def _add_password_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the password from the first line of stdin (else ${PASSWORD_ENV}, else a prompt)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phoenix-auth",
        description="Phoenix auth service: serve, migrate, administer users and sessions, seed demo data.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "exit codes:\n"
            "  0 ok, 1 failure, 2 usage/configuration error, 3 database unreachable,\n"
            "  4 migration lock busy, 5 case-duplicate emails, 6 login index not used,\n"
            "  7 user not found, 8 user exists"
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the HTTP service (settings from the environment)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "drain",
        help="before shutdown (a pod's preStop hook): every response of the running server asks its "
        "client to close the connection, /readyz answers 503; returns after --seconds",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="how long to hold off SIGTERM (default 5)")
    p.set_defaults(func=cmd_drain)

    p = sub.add_parser(
        "migrate", help="apply the schema and build the seed's indexes CONCURRENTLY, then verify"
    )
    p.add_argument(
        "--rollback", action="store_true", help="drop the index set's indexes CONCURRENTLY instead"
    )
    p.add_argument(
        "--index-set",
        default=migrations.DEFAULT_INDEX_SET,
        choices=sorted(migrations.INDEX_SETS),
        help="default: seed",
    )
    p.add_argument(
        "--lock-timeout", type=_positive_seconds, default=10.0, metavar="S", help="default 10 (0 = none)"
    )
    p.add_argument(
        "--statement-timeout",
        type=_positive_seconds,
        default=3600.0,
        metavar="S",
        help="default 3600 (0 = none)",
    )
    p.add_argument(
        "--lock-wait",
        type=_positive_seconds,
        default=None,
        metavar="S",
        help="wait this long for another migration's lock (default: the lock timeout)",
    )
    p.add_argument("--progress-interval", type=_positive_seconds, default=5.0, metavar="S", help="default 5")
    p.add_argument("--no-vacuum", action="store_true", help="ANALYZE only instead of VACUUM (ANALYZE)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("user", help="create, set-password, disable, enable, delete a user")
    user_sub = p.add_subparsers(dest="user_action", required=True, metavar="ACTION")
    c = user_sub.add_parser("create", help="create a user with an argon2id password hash")
    c.add_argument("--email", required=True)
    c.add_argument("--name")
    c.add_argument("--role", default="user")
    c.add_argument("--team")
    _add_password_source(c)
    c = user_sub.add_parser("set-password", help="set a new password and revoke the user's sessions")
    _add_user_ref(c)
    _add_password_source(c)
    c.add_argument("--keep-sessions", action="store_true", help="do not revoke the user's active sessions")
    for action, text in (("disable", "disable (cannot log in)"), ("enable", "enable again")):
        c = user_sub.add_parser(action, help=text)
        _add_user_ref(c)
    c = user_sub.add_parser("delete", help="delete a user and their sessions")
    _add_user_ref(c)
    c.add_argument("--yes", action="store_true", help="confirm the deletion")
    p.set_defaults(func=cmd_user)

    p = sub.add_parser("sessions", help="session administration")
    sess_sub = p.add_subparsers(dest="sessions_action", required=True, metavar="ACTION")
    c = sess_sub.add_parser("revoke", help="revoke every active session of a user (all replicas)")
    _add_user_ref(c)
    p.set_defaults(func=cmd_sessions)

    p = sub.add_parser("seed-demo", help="insert N demo users fast (benchmarks); idempotent")
    p.add_argument("count", type=_count, metavar="N")
    p.add_argument(
        "--bcrypt-fraction", type=_fraction, default=0.0, metavar="F", help="share of bcrypt hashes (0-1)"
    )
    p.add_argument("--batch-rows", type=_count, default=100_000, metavar="B", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_seed_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `phoenix-auth` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"phoenix-auth: {format_settings_error(exc)}", file=sys.stderr)
        return EXIT_USAGE

    try:
        return int(args.func(args, settings))
    except UsageError as exc:
        print(f"phoenix-auth: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DatabaseUnreachable as exc:
        print(f"phoenix-auth: error: {exc}", file=sys.stderr)
        return EXIT_DB_UNREACHABLE
    except KeyboardInterrupt:
        print("phoenix-auth: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        for cls, code in _EXIT_CODES:
            if isinstance(exc, cls):
                print(f"phoenix-auth: error: {exc}", file=sys.stderr)
                return code
        if isinstance(exc, psycopg.errors.UndefinedTable):
            print(
                f"phoenix-auth: error: the Phoenix schema is missing ({exc}); "
                "run `phoenix-auth migrate` first",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        if isinstance(exc, psycopg.Error):
            print(f"phoenix-auth: database error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        raise


if __name__ == "__main__":
    sys.exit(main())
