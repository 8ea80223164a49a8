"""Copy one chunk of one table: read the snapshot in batches, convert, stream binary COPY.

Runs in a worker process (one chunk at a time, several workers in parallel). Memory is bounded by
the batch size whatever the table size. Rows that no rule can convert go to a JSONL reject file.
`copy_chunk` takes the fast path (arrow_copy.py) where it applies, else the Python path
(python_copy.py), which alone needs psycopg: the workers' fork server does not import it.
"""

from __future__ import annotations

import time

from runtime.migrate import columnar
from runtime.migrate.chunk import BeforeCommit, ChunkResult
from runtime.migrate.plan import TablePlan


def copy_chunk(
    plan: TablePlan,
    chunk: tuple[int, int],
    target_url: str,
    reject_path: str,
    *,
    digest: bool = False,
    before_commit: BeforeCommit | None = None,
) -> ChunkResult:
    """Copy one chunk in one transaction: by the fast path (arrow_copy.py) where it applies,
    else on the Python path; invalid UTF-8 makes that start over with lenient reads.

    With `digest`, the chunk also gets the source side of its verification from the same scan
    (columnar.py on the fast path; the converted rows on the Python path, verify.chunk_digest);
    a path that cannot leaves `result.digest` None, and verification reads the chunk itself.
    `before_commit` runs just before the chunk commits; what it raises rolls the chunk back
    (integrity_gate.py).
    """
    # Here, not at the top: the parent process imports this module but never loads pyarrow.
    from runtime.migrate import arrow_copy
    from runtime.migrate.arrow_digest import ColumnarDigest, NulInText

    started = time.perf_counter()
    strict = True
    fallback = None
    if arrow_copy.applies(plan):
        fast_digest = digest and columnar.digested_by_copy(plan)
        hashed = ColumnarDigest(plan, validate_utf8=False) if fast_digest else None
        try:
            rows = arrow_copy.copy_chunk(plan, chunk, target_url, hashed, before_commit)
        except arrow_copy.DeclaredTypeBroken as exc:
            return ChunkResult(plan.label, chunk, replan=str(exc))
        except (arrow_copy.Unavailable, NulInText) as exc:
            if plan.from_declared_types:  # rules are chosen from a profile, never from a guess
                return ChunkResult(plan.label, chunk, replan=f"fast copy unavailable: {exc!r}")
            fallback = repr(exc)
            strict = not isinstance(exc, NulInText)
        else:
            return ChunkResult(
                table=plan.label,
                chunk=chunk,
                rows_read=rows,
                rows_written=rows,
                seconds=time.perf_counter() - started,
                digest=None if hashed is None else hashed.digest(),
                path="arrow",
            )
    elif plan.from_declared_types:  # its storage classes are the fast copy's to prove
        return ChunkResult(plan.label, chunk, replan="the fast copy does not apply")
    from runtime.migrate import python_copy  # psycopg: only where a chunk needs it

    result = python_copy.copy(
        plan,
        chunk,
        target_url,
        reject_path,
        strict=strict,
        digest=digest,
        before_commit=before_commit,
        fast_path_failure=fallback,
    )
    result.seconds = time.perf_counter() - started
    return result
