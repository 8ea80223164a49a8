"""payments/ is used by services and monitors and uses runtime only: it never imports them."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PAYMENTS = Path(__file__).resolve().parents[3] / "payments"
ALLOWED = {"payments", "runtime", "httpx"} | set(sys.stdlib_module_names)


def test_payments_imports_nothing_of_monitors_or_services() -> None:
    outside: dict[str, set[str]] = {}
    for path in sorted(PAYMENTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] not in ALLOWED:
                    outside.setdefault(path.name, set()).add(name)
    assert outside == {}
    assert len(list(PAYMENTS.glob("*.py"))) > 5
