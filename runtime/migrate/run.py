"""One migration run: what it is asked (Options) and what it learns, table by table."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runtime.migrate.digest import Digest
from runtime.migrate.plan import TablePlan
from runtime.migrate.snapshot import Source

DEFAULT_CHUNK_ROWS = 250_000


@dataclass
class Options:
    sources: list[Source]
    target_url: str
    mode: str = "infer"  # infer | existing
    work_dir: Path = Path("var/migrate")
    report_path: Path | None = None
    rejects_path: Path | None = None
    allow_rejects: bool = False
    truncate: bool = False
    resume: bool = False
    dry_run: bool = False
    verify: bool = True
    jobs: int = 2
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    #: Infer mode: PostgreSQL names keep the SQLite names' case (else folded, plan.fold_case).
    keep_case: bool = False
    progress: bool | None = None  # None: bars only on a terminal
    skip_tables: frozenset[str] = frozenset()

    @property
    def rejects_file(self) -> Path:
        return self.rejects_path or self.work_dir / "rejects.jsonl"

    @property
    def state_file(self) -> Path:
        return self.work_dir / "state.json"


@dataclass
class TableOutcome:
    plan: TablePlan
    rows_written: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    skipped_by_resume: bool = False
    verified: bool | None = None
    verification_problems: list[str] = field(default_factory=list)
    content_hash: str | None = None
    constraint_problems: list[str] = field(default_factory=list)
    copy_paths: set[str] = field(default_factory=set)
    #: Why a plan from declared types was replaced by one from the profile (copy_tables).
    replanned: str | None = None


@dataclass
class Run:
    options: Options
    plans: list[TablePlan] = field(default_factory=list)
    outcomes: dict[str, TableOutcome] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    #: Source-side digests the copy computed from its own scan: (table label, chunk) -> digest.
    copy_digests: dict[tuple[str, int], Digest] = field(default_factory=dict)
    #: Tables where PostgreSQL refused rows (constraints of an existing table).
    refused_tables: set[str] = field(default_factory=set)
    #: Each source's integrity check (source name -> its problems), run in the background.
    integrity_checks: dict[str, Future[list[str]]] = field(default_factory=dict)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
