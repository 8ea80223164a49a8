#!/usr/bin/env bash
# Builds the domos image from the repository root (`make image`), pulling or building its base
# images first (docker/base-images/build.sh). The host's locally added CAs
# (/usr/local/share/ca-certificates, e.g. a TLS-intercepting proxy's) reach pip in the builder
# stage only (docker/pip-install.sh). Builds use the host network and the classic builder, which
# needs no frontend image from a registry.
#
#   docker/build.sh            -> ${DOMOS_IMAGE:-domos:latest}
#   docker/build.sh --migrate  -> also ${DOMOS_MIGRATE_IMAGE:-domos-migrate:latest}
set -euo pipefail
cd "$(dirname "$0")/.."
export DOCKER_BUILDKIT=0
image=${DOMOS_IMAGE:-domos:latest}

docker/base-images/build.sh
ca=""
for f in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$f" ] && ca+="$(cat "$f")"$'\n'
done
docker build --quiet --network host --build-arg "EXTRA_CA_CERTS=$ca" \
  -f docker/Dockerfile -t "$image" . >/dev/null
echo "built $image"
if [ "${1:-}" = --migrate ]; then
  docker build --quiet --network host --build-arg "EXTRA_CA_CERTS=$ca" \
    --build-arg "DOMOS_IMAGE=$image" -f docker/migrate.Dockerfile \
    -t "${DOMOS_MIGRATE_IMAGE:-domos-migrate:latest}" . >/dev/null
  echo "built ${DOMOS_MIGRATE_IMAGE:-domos-migrate:latest}"
fi
