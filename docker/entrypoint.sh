#!/bin/sh
# Container entry point (run by tini): prepare the writable directories, check the role, then
# exec the command, which is supervisord for a role container or a one-shot `domos ...` (the
# compose `migrate` service). exec keeps tini -> supervisord with nothing in between.
set -eu

: "${DOMOS_HOME:=/app}"
: "${DOMOS_RUN_DIR:=$DOMOS_HOME/var/run}"

mkdir -p "$DOMOS_HOME/var/run" "$DOMOS_RUN_DIR"
if [ -n "${DOMOS_DATA_DIR:-}" ]; then
    mkdir -p "$DOMOS_DATA_DIR"
fi

if [ "${1:-}" = "supervisord" ]; then
    # supervisord.conf includes supervisor/roles/$DOMOS_ROLE/*.conf: say clearly what is wrong
    # instead of starting a supervisord with no programs.
    if [ -z "${DOMOS_ROLE:-}" ]; then
        echo "domos-entrypoint: DOMOS_ROLE is required (api, web, bot, monitors, sandbox, all)" >&2
        exit 64
    fi
    if [ ! -d "$DOMOS_HOME/supervisor/roles/$DOMOS_ROLE" ]; then
        echo "domos-entrypoint: unknown DOMOS_ROLE '$DOMOS_ROLE'" >&2
        exit 64
    fi
    # The role's settings as its programs will read them: a bad value refuses the container
    # here, every bad variable named, exit 78 (EX_CONFIG), instead of programs that each take
    # seconds to fail and restart (runtime/supervision/preflight.py).
    status=0
    domos supervisor check --role "$DOMOS_ROLE" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "domos-entrypoint: the $DOMOS_ROLE role's configuration is invalid (above)" >&2
        exit "$status"
    fi
fi

exec "$@"
