"""Size of the role image against its base image, measured in the same run.

Builds the images with docker/build.sh (base images pulled, or stand-ins built from Debian
packages; the layer cache makes a second run quick), then reads from the engine: the base image
(the baseline), the role image, and what the role image adds over its base, split by layer and,
inside the venv, by installed distribution. `--migrate` also sizes the migrate image.

Last line: one JSON object; "ratio" = bytes the role image adds over its base / the 350 MB
budget of issue 16 (<= 1 is within it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE = "python:3.11-slim-bookworm"
IMAGE = "domos:latest"
MIGRATE_IMAGE = "domos-migrate:latest"
BUDGET_BYTES = 350 * 10**6
MB = 10**6

#: Sizes of the venv's distributions, inside the image (du of each top-level entry).
VENV_SIZES = (
    "cd /opt/venv/lib/python3.11/site-packages && du -s --block-size=1 * | sort -rn | head -12"
)


def docker(*argv: str) -> str:
    return subprocess.run(
        ["docker", *argv], capture_output=True, text=True, check=True, timeout=600
    ).stdout


def size(image: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", image).strip())


def layers(image: str) -> list[tuple[int, str]]:
    out = docker(
        "history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", image
    )
    rows = []
    for line in out.splitlines():
        bytes_, _, created_by = line.partition("\t")
        rows.append((int(bytes_), " ".join(created_by.split())[:90]))
    return rows


def venv_sizes(image: str) -> list[tuple[int, str]]:
    out = docker("run", "--rm", "--entrypoint", "sh", image, "-c", VENV_SIZES)
    return [(int(n), name) for n, name in (line.split("\t", 1) for line in out.splitlines())]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--migrate", action="store_true", help="also size the migrate image")
    args = parser.parse_args()
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode
    ):
        print("no Docker engine answers (docker info): nothing measured")
        print(json.dumps({"bench": "image", "ratio": None, "skipped": "no Docker engine"}))
        return 0
    build = [str(REPO / "docker" / "build.sh"), *(["--migrate"] if args.migrate else [])]
    subprocess.run(build, cwd=REPO, check=True, timeout=900)

    base, role = size(BASE), size(IMAGE)
    added = role - base
    print(f"base  {BASE:<28} {base / MB:8.1f} MB  (baseline)")
    print(f"role  {IMAGE:<28} {role / MB:8.1f} MB  (+{added / MB:.1f} MB over the base)")
    base_layers = len(layers(BASE))
    own = layers(IMAGE)[: -base_layers or None]
    print("largest layers the role image adds:")
    for bytes_, created_by in sorted(own, reverse=True)[:6]:
        print(f"  {bytes_ / MB:8.1f} MB  {created_by}")
    print("largest entries of its venv:")
    for bytes_, name in venv_sizes(IMAGE):
        print(f"  {bytes_ / MB:8.1f} MB  {name}")
    result: dict[str, object] = {
        "bench": "image",
        "base_bytes": base,
        "image_bytes": role,
        "added_bytes": added,
        "budget_bytes": BUDGET_BYTES,
    }
    if args.migrate:
        migrate = size(MIGRATE_IMAGE)
        print(
            f"migrate {MIGRATE_IMAGE:<26} {migrate / MB:8.1f} MB (+{(migrate - role) / MB:.1f} MB)"
        )
        result["migrate_image_bytes"] = migrate
    result["ratio"] = round(added / BUDGET_BYTES, 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
