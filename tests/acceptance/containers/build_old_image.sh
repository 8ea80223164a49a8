#!/usr/bin/env bash
# The older version's image of test_compose_upgrade.py: `git archive` of COMMIT, built by that
# commit's own docker/build.sh under IMAGE. Nothing to do when IMAGE exists: it is built once per
# machine and reused by its tag (the commit never changes).
#
#   tests/acceptance/containers/build_old_image.sh COMMIT IMAGE
set -euo pipefail
commit=${1:?usage: build_old_image.sh COMMIT IMAGE}
image=${2:?usage: build_old_image.sh COMMIT IMAGE}
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image present"
  exit 0
fi
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
# From the top: in a subdirectory git archive packs that subdirectory only. Needs the commit in
# the clone (a shallow one lacks it).
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
git -C "$repo" archive "$commit" | tar -x -C "$tree"
cd "$tree"
started=$SECONDS
DOMOS_IMAGE="$image" bash docker/build.sh
echo "$image built in $((SECONDS - started)) s"
