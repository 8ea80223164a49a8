"""Rows per chunk and per batch, bounded in bytes as well as in rows.

A legacy bot may keep files or whole updates in its rows (a megabyte each and more). Counted in
rows alone, one Arrow batch of such a table held gigabytes, and the target side of a chunk's
verification, aggregated in one PostgreSQL value, passed its 1 GB limit. A table holds at most
the snapshot's bytes, so `file bytes / table rows` bounds its average row, with no scan of the
table: chunks and batches are sized from that bound. The bound is loose for a table sharing its
file with larger ones, which only makes those chunks and batches smaller.
"""

from __future__ import annotations

import os

#: Bytes of source rows per chunk: what PostgreSQL aggregates per column of a chunk (row texts
#: print a bytea as hex, twice its bytes) stays far below its 1 GB limit on one value.
CHUNK_BYTES = 256 << 20
#: Bytes of source rows per batch a worker holds.
BATCH_BYTES = 16 << 20
#: Rows per batch where rows are small (about a megabyte of chat messages).
BATCH_ROWS = 8192


def row_bytes_bound(file_bytes: int, rows: int) -> int:
    return max(1, -(-file_bytes // max(1, rows)))


def chunk_rows_for(limit: int, file_bytes: int, rows: int) -> int:
    """Rows per chunk: at most `limit` (--chunk-rows), and at most CHUNK_BYTES of rows."""
    return max(1, min(limit, CHUNK_BYTES // row_bytes_bound(file_bytes, rows)))


def batch_rows(file_bytes: int, rows: int) -> int:
    """Rows per batch: at most BATCH_ROWS, and at most BATCH_BYTES of rows."""
    return max(1, min(BATCH_ROWS, BATCH_BYTES // row_bytes_bound(file_bytes, rows)))


def usable_cpus() -> int:
    """CPUs this process may run on: a container's cpuset or `taskset` leaves fewer than
    os.cpu_count() reports, and workers beyond them only take turns."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on this platform (macOS)
        return os.cpu_count() or 1
