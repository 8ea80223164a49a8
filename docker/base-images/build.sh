#!/usr/bin/env bash
# Base images for docker/Dockerfile and docker-compose.yml. Each is pulled from its registry when
# one answers; where none does (air-gapped sites, sites where Docker Hub is blocked, this project's
# CI) a stand-in is built from Debian bookworm packages under the same name, honouring the
# official image's contract (entrypoint, user, paths, environment). mmdebstrap builds the root
# file system from this machine's own apt sources; nothing else is downloaded.
#
#   docker/base-images/build.sh            pull or build what is missing
#   docker/base-images/build.sh --rebuild  build every stand-in again (no pull)
#   docker/base-images/build.sh --list     print the image names
#
# Builds use the host network (apt inside a build reaches the mirror the way the host does).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export DOCKER_BUILDKIT=0

# name -> stand-in Dockerfile. The tags are the Debian packages' own versions, so a stand-in
# never claims a version it does not hold (bookworm: prometheus 2.42, alertmanager 0.25,
# postgres_exporter 0.11.1, postgresql 15, python 3.11).
declare -A IMAGES=(
  ["python:3.11-slim-bookworm"]=python.Dockerfile
  ["postgres:15-bookworm"]=postgres.Dockerfile
  ["prom/prometheus:v2.42.0"]=prometheus.Dockerfile
  ["prom/alertmanager:v0.25.0"]=alertmanager.Dockerfile
  ["prometheuscommunity/postgres-exporter:v0.11.1"]=postgres-exporter.Dockerfile
)
ROOTFS=domos-base/debian:bookworm-minbase

mode=${1:-}
case "$mode" in
  --list) printf '%s\n' "${!IMAGES[@]}" | sort; exit 0 ;;
  --rebuild|"") ;;
  *) echo "usage: $0 [--rebuild|--list]" >&2; exit 64 ;;
esac

have() { docker image inspect "$1" >/dev/null 2>&1; }

rootfs() {
  have "$ROOTFS" && [ "$mode" != --rebuild ] && return 0
  echo "base-images: building $ROOTFS with mmdebstrap"
  # Documentation, man pages and translations are left out, as Debian's own slim images do.
  mmdebstrap --variant=minbase --quiet \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --aptopt='APT::Install-Recommends "false"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    --format=tar bookworm - | docker import --change 'CMD ["bash"]' - "$ROOTFS" >/dev/null
}

standin() {
  docker build --quiet --network host --build-arg "ROOTFS=$ROOTFS" \
    --label org.domos.standin=true -t "$1" -f "$here/${IMAGES[$1]}" "$here" >/dev/null
}

missing=()
for name in $(printf '%s\n' "${!IMAGES[@]}" | sort); do
  if [ "$mode" != --rebuild ]; then
    have "$name" && { echo "base-images: $name present"; continue; }
    if timeout 120 docker pull --quiet "$name" >/dev/null 2>&1; then
      echo "base-images: $name pulled"; continue
    fi
  fi
  missing+=("$name")
done
[ ${#missing[@]} -gt 0 ] || exit 0

rootfs
# The stand-ins build side by side: each spends most of its time waiting on the apt mirror.
declare -A pids=()
for name in "${missing[@]}"; do
  echo "base-images: building the stand-in $name"
  standin "$name" &
  pids[$name]=$!
done
failed=0
for name in "${!pids[@]}"; do
  wait "${pids[$name]}" || { echo "base-images: building $name failed" >&2; failed=1; }
done
exit $failed
