"""Sends each domain model to the alias of its logical database; Django's apps to `default`."""

from __future__ import annotations

from typing import Any

from services.web.databases import DJANGO_ALIAS

DOMAIN_APP = "domain"


def _logical_db(model: Any) -> str | None:
    return getattr(model, "logical_db", None)


class DomainRouter:
    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return _logical_db(model)

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return _logical_db(model)

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        first, second = _logical_db(type(obj1)), _logical_db(type(obj2))
        if first is None and second is None:
            return None
        return first == second

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool:
        # Domain tables belong to `domos db upgrade`; Django manages only its own, in `default`.
        if app_label == DOMAIN_APP:
            return False
        return db == DJANGO_ALIAS
