"""Find a Monitor subclass by name: module `<package>.<name>` exposes it as `MONITOR`."""

from __future__ import annotations

import importlib
import pkgutil
import re
from types import ModuleType

from runtime.errors import MonitorError
from runtime.monitor.base import Monitor

DEFAULT_PACKAGE = "monitors"
#: Overrides the package monitors are looked up in (tests run their own small monitors).
PACKAGE_VARIABLE = "DOMOS_MONITOR_PACKAGE"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def load_monitor(name: str, package: str = DEFAULT_PACKAGE) -> type[Monitor]:
    if not _NAME.match(name):
        raise MonitorError(f"invalid monitor name {name!r}; {_known_text(package)}")
    module_name = f"{package}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "this module does not exist" means an unknown name; a missing import inside
        # an existing monitor module is a real error and keeps its traceback.
        if exc.name not in (module_name, package):
            raise
        raise MonitorError(f"unknown monitor {name!r}; {_known_text(package)}") from None
    monitor_cls = _exposed_monitor(module)
    if monitor_cls is None:
        raise MonitorError(
            f"module {module_name} does not expose a Monitor subclass as MONITOR; "
            f"{_known_text(package)}"
        )
    return monitor_cls


def known_monitors(package: str = DEFAULT_PACKAGE) -> list[str]:
    """Names of the modules in `package` that expose a monitor (imports each candidate)."""
    try:
        root = importlib.import_module(package)
    except ModuleNotFoundError:
        return []
    names = []
    for info in pkgutil.iter_modules(getattr(root, "__path__", [])):
        if info.ispkg or info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{package}.{info.name}")
        except Exception:
            # A broken module is reported when it is asked for by name, not while listing.
            continue
        if _exposed_monitor(module) is not None:
            names.append(info.name)
    return sorted(names)


def _exposed_monitor(module: ModuleType) -> type[Monitor] | None:
    candidate = getattr(module, "MONITOR", None)
    if isinstance(candidate, type) and issubclass(candidate, Monitor):
        return candidate
    return None


def _known_text(package: str) -> str:
    known = known_monitors(package)
    if not known:
        return f"no monitors found in package {package!r}"
    return "known monitors: " + ", ".join(known)
