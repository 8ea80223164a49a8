"""`domos web`: the Django staff admin under gunicorn, and its chores.

domos web [--host 0.0.0.0] [--port 8002] [--workers 2]   migrate, collectstatic, serve, /metrics
domos web migrate                                        Django's own tables only
domos web createstaff --username NAME [--password-env VAR] [--superuser]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

SETTINGS_MODULE = "services.web.settings"
DEFAULT_PORT = 8002


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "web",
        help="run the Django staff admin (gunicorn)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    env = os.environ
    parser.add_argument("--host", default=env.get("WEB_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(env.get("WEB_PORT", DEFAULT_PORT)))
    parser.add_argument("--workers", type=int, default=int(env.get("WEB_WORKERS", 2)))
    parser.add_argument(
        "--no-migrate", action="store_true", help="do not apply Django's migrations first"
    )
    from runtime.db.schema_recheck import add_recheck_option

    add_recheck_option(parser)
    parser.set_defaults(handler=serve, web_command=None)
    actions = parser.add_subparsers(dest="web_command", metavar="ACTION")
    migrate = actions.add_parser("migrate", help="create or update Django's own tables")
    migrate.set_defaults(handler=migrate_command)
    staff = actions.add_parser("createstaff", help="create or update a staff login")
    staff.add_argument("--username", default=env.get("WEB_STAFF_USERNAME"))
    staff.add_argument(
        "--password-env",
        default="WEB_STAFF_PASSWORD",
        help="environment variable holding the password (default: WEB_STAFF_PASSWORD)",
    )
    staff.add_argument("--email", default=env.get("WEB_STAFF_EMAIL", ""))
    staff.add_argument("--superuser", action="store_true", help="all permissions")
    staff.set_defaults(handler=createstaff_command)


def setup_django() -> None:
    from runtime.config import Settings
    from runtime.db import check_login

    # A login PostgreSQL refuses exits 78 (a ConfigError, which supervisord leaves down) before
    # Django's migrate or gunicorn would fail on it with an ordinary exit, restarted for ever.
    check_login(Settings.from_env())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    import django

    django.setup()


def migrate_command(args: argparse.Namespace) -> int:
    setup_django()
    from services.web.bootstrap import migrate

    migrate()
    return 0


def createstaff_command(args: argparse.Namespace) -> int:
    from runtime.errors import ConfigError

    if not args.username:
        raise ConfigError("--username", "is required (or WEB_STAFF_USERNAME)")
    password = os.environ.get(args.password_env)
    if not password:
        raise ConfigError(args.password_env, "must hold the staff password")
    setup_django()
    from services.web.bootstrap import create_staff, migrate

    migrate()  # the login table must exist, also before the first `domos web`
    created = create_staff(args.username, password, email=args.email, superuser=args.superuser)
    print(f"staff user {args.username!r} {'created' if created else 'updated'}")
    return 0


def serve(args: argparse.Namespace) -> int:
    import shutil

    from services.common.metrics_dir import MULTIPROC_ENV, prepare_metrics_dir

    # Before Django and prometheus_client are imported: the forked workers inherit the choice
    # of multiprocess storage, and /metrics adds up their files.
    temporary = not os.environ.get(MULTIPROC_ENV)
    metrics_dir = prepare_metrics_dir(os.environ, program="web")
    try:
        from services.web.server import configure_program_logging, run_gunicorn

        # Before Django (which sets TZ to its TIME_ZONE) and its migrations, whose lines are
        # the program's too.
        configure_program_logging()
        setup_django()
        from django.db import connections

        from runtime.config import Settings
        from runtime.db.schema_gate import PROGRAM_DATABASES, wait_before_serving

        # The admin shows the domain tables: not served before their schema has every
        # migration of this code (runtime.db.schema_gate). Django's own tables are migrated
        # just below, by Django.
        if not wait_before_serving(
            Settings.from_env(),
            logical_dbs=PROGRAM_DATABASES["web"],
            recheck_s=args.schema_recheck,
        ):
            return 0

        from services.web.bootstrap import collectstatic, migrate

        if not args.no_migrate:
            migrate()
        collectstatic()
        # gunicorn forks its workers from this process: a connection the migrations left open
        # would be one PostgreSQL socket (or SQLite handle) shared by every worker, their
        # queries interleaved on it, and the first worker to recycle it would cut the others'
        # queries off (a 500 now and then, or another request's rows).
        connections.close_all()
        return run_gunicorn(host=args.host, port=args.port, workers=args.workers)
    finally:
        if temporary:
            shutil.rmtree(metrics_dir, ignore_errors=True)
