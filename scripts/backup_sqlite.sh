#!/bin/sh
# The name operators know: a thin wrapper around `domos backup sqlite` (same arguments).
set -eu
exec domos backup sqlite "$@"
