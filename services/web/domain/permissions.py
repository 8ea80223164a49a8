"""Whether a staff member may see a table's rows: the one question every page that shows rows of
several tables (the timeline, the overview) asks per table, answered as the admin answers it for
the table's own list (its ModelAdmin's view permission: `view_<model>` or `change_<model>`)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest


def may_view(request: HttpRequest, model: type[Any]) -> bool:
    """True when `request.user` may open `model`'s list in the admin."""
    if not admin.site.is_registered(model):
        return False  # a table the admin does not show is shown nowhere else either
    return bool(admin.site.get_model_admin(model).has_view_permission(request))
