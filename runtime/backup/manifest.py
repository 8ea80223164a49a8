"""A backup run's manifest: written last, so its presence says the run finished.

`backup_sqlite` writes a run's copies under `<run>.partial/`, then this manifest (each copy's
size and SHA-256), then renames the directory. A run cut short (a full disk, a killed schedule)
therefore never looks like a run, and a copy damaged since it was made (bit rot, a truncated
transfer to another disk) is found by its digest before a restore touches any live file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "manifest.json"
PARTIAL_SUFFIX = ".partial"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CopyRecord:
    bytes: int
    sha256: str


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(run_dir: Path, copies: Mapping[str, Path], made_at: str) -> None:
    """Record every copy, durably (fsync of the file and of the directory)."""
    body = {
        "made_at": made_at,
        "copies": {
            name: {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
            for name, path in copies.items()
        },
    }
    target = run_dir / MANIFEST_NAME
    with target.open("w", encoding="utf-8") as handle:
        json.dump(body, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(run_dir)


def read_manifest(run_dir: Path) -> dict[str, CopyRecord] | None:
    """The copies a run recorded, or None for a run made before manifests existed."""
    path = run_dir / MANIFEST_NAME
    if not path.exists():
        return None
    body = json.loads(path.read_text(encoding="utf-8"))
    return {
        name: CopyRecord(int(record["bytes"]), str(record["sha256"]))
        for name, record in body["copies"].items()
    }


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
