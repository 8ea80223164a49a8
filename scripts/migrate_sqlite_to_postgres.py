#!/usr/bin/env python3
"""The name operators know: a thin wrapper around `domos migrate` (same arguments)."""

from __future__ import annotations

import sys

from runtime.cli import main

if __name__ == "__main__":
    sys.exit(main(["migrate", *sys.argv[1:]]))
