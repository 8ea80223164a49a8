#!/bin/sh
# Starts Alertmanager with prometheus/alertmanager.yml, its ${...} placeholders filled in from the
# environment. Alertmanager 0.25 reads no environment variables and has no bot_token_file, so the
# bot token and the chat id must be written into the file it loads. The filled-in copy holds the
# token: it is written mode 0600 outside the read-only config mount and the data volume.
#
#   TELEGRAM_BOT_TOKEN  the bot's token (the operators' chat must have the bot as a member)
#   ALERT_CHAT_ID       the operators' chat, a numeric id (groups are negative)
#   TELEGRAM_API_URL    https://api.telegram.org, or the sandbox
#   ALERTMANAGER_TEMPLATE / ALERTMANAGER_CONFIG  input and output files (defaults for the image)
#
# Remaining arguments go to Alertmanager. Used by docker-compose.yml and by the tests on the host.
set -eu

template=${ALERTMANAGER_TEMPLATE:-/etc/alertmanager/alertmanager.yml}
config=${ALERTMANAGER_CONFIG:-/tmp/alertmanager.yml}

fail() {
    echo "alertmanager-entrypoint: $*" >&2
    exit 1
}

[ -n "${TELEGRAM_BOT_TOKEN:-}" ] || fail "TELEGRAM_BOT_TOKEN is required"
[ -n "${ALERT_CHAT_ID:-}" ] || fail "ALERT_CHAT_ID is required (the operators' chat id)"
[ -n "${TELEGRAM_API_URL:-}" ] || fail "TELEGRAM_API_URL is required"
# The values go into YAML and a sed expression: allow only what a token, a chat id and a URL hold.
case ${ALERT_CHAT_ID#-} in
    '' | *[!0-9]*) fail "ALERT_CHAT_ID must be a numeric chat id, not '$ALERT_CHAT_ID'" ;;
esac
case $TELEGRAM_BOT_TOKEN in
    *[!A-Za-z0-9:_-]*) fail "TELEGRAM_BOT_TOKEN holds characters a bot token has not" ;;
esac
case $TELEGRAM_API_URL in
    http://?* | https://?*) ;;
    *) fail "TELEGRAM_API_URL must be an http(s) URL, not '$TELEGRAM_API_URL'" ;;
esac
case $TELEGRAM_API_URL in
    *[!A-Za-z0-9:/._~%-]*) fail "TELEGRAM_API_URL holds characters a base URL has not" ;;
esac

umask 077
sed -e "s|\${TELEGRAM_BOT_TOKEN}|$TELEGRAM_BOT_TOKEN|g" \
    -e "s|\${ALERT_CHAT_ID}|$ALERT_CHAT_ID|g" \
    -e "s|\${TELEGRAM_API_URL}|${TELEGRAM_API_URL%/}|g" \
    "$template" >"$config"

# prom/alertmanager ships /bin/alertmanager; Debian (and the stand-in image) prometheus-alertmanager.
for binary in alertmanager prometheus-alertmanager; do
    if command -v "$binary" >/dev/null 2>&1; then
        exec "$binary" --config.file="$config" "$@"
    fi
done
fail "no alertmanager binary on PATH"
