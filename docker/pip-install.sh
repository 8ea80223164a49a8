#!/bin/sh
# pip install into /opt/venv for the image builds. EXTRA_CA_CERTS (a build argument: PEM text)
# extends the system's CA bundle for this one command, so pip can pass a TLS-intercepting proxy;
# the bundle lives in /tmp of a builder stage only and never reaches a final image.
set -eu
if [ -n "${EXTRA_CA_CERTS:-}" ]; then
    bundle=$(mktemp)
    cat /etc/ssl/certs/ca-certificates.crt > "$bundle"
    printf '%s\n' "$EXTRA_CA_CERTS" >> "$bundle"
    export PIP_CERT="$bundle"
fi
/opt/venv/bin/pip install "$@"
status=$?
rm -f "${bundle:-}"
exit $status
