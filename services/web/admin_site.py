"""The admin site under the project's own name, and what every admin on it does with the values
a request brings.

Django's AdminSite says "Администрирование Django" wherever a page is rendered without its
context; giving the default site our titles through AdminConfig.default_site (instead of
setting attributes on `admin.site` when the URLconf is imported) makes every page that uses
`each_context`, the overview included, carry them.

Every model registered on the site, Django's users and groups and django-axes's tables as much
as the domain's, gets its admin class with GuardedModelAdmin mixed in (DomosAdminSite.register),
so a hostile value is refused the same way on every table, and a new table cannot miss it. A NUL
anywhere is refused before any view (services.web.nul_guard).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG, ChangeList
from django.core.exceptions import BadRequest, ValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.db import DataError, NotSupportedError
from django.db.models import Field, Model, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest

SITE_HEADER = "domos — администрирование"
SITE_TITLE = "domos"
INDEX_TITLE = "Данные сообщества"

#: Lookups no list's filter sends, refused in any list's query string (400). A regular
#: expression is compiled by the database: an invalid one is a database error, and one that
#: backtracks (`(a+)+$`) holds a worker on SQLite, whose REGEXP is Python's `re`. A range from a
#: query string is one text, whose characters become its bounds (a wrong number of parameters).
REFUSED_LOOKUPS = frozenset({"regex", "iregex", "range"})

#: What a list's query fails with when a value from its query string cannot be compared by the
#: database, however well-formed: a date hierarchy at the calendar's edge (year 9999 has no next
#: year) or a year beyond C's long (ValueError, OverflowError); an integer beyond SQLite's 64 bits
#: in a list of ids or a foreign key (OverflowError binding it); an address that is none for
#: PostgreSQL's inet (ValueError); JSON containment on SQLite (NotSupportedError); a value
#: PostgreSQL refuses (DataError).
UNCOMPARABLE = (ValueError, OverflowError, DataError, NotSupportedError)


def key_of(field: Field[Any, Any], value: str) -> Any:
    """`value` as a value of the key `field`, whose column can hold it; ValidationError if not.

    An integer key's validators are its column's range on this database (Django's
    integer_field_range): beyond it SQLite cannot even bind the number.
    """
    ProhibitNullCharactersValidator()(value)
    key = field.to_python(value)
    field.run_validators(key)
    return key


class KeysInRangeMultipleChoiceField(forms.ModelMultipleChoiceField):  # type: ignore[type-arg]
    """A many-to-many choice (a group's permissions, a user's groups) whose submitted keys are
    checked before its query: one beyond 64 bits answered 500 on SQLite (OverflowError)."""

    def clean(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)) and self.queryset is not None:
            opts = self.queryset.model._meta
            field = opts.get_field(self.to_field_name) if self.to_field_name else opts.pk
            for key in value:
                try:
                    key_of(field, str(key))
                except ValidationError:
                    raise ValidationError(
                        self.error_messages["invalid_pk_value"],
                        code="invalid_pk_value",
                        params={"pk": key},
                    ) from None
        return super().clean(value)


class GuardedModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Mixed into every registered admin: the values a request brings to a list, an action or a
    many-to-many choice answer the admin's own refusals, never a 500."""

    def lookup_allowed(self, lookup: str, value: str, request: Any = None) -> bool:
        if REFUSED_LOOKUPS.intersection(lookup.split(LOOKUP_SEP)):
            return False  # DisallowedModelAdminLookup: 400
        # Django's own rules after ours: UserAdmin refuses any password lookup, and a relation
        # must be one of the list's filters.
        return bool(super().lookup_allowed(lookup, value, request))

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        # Django answers ?e=1 to parameters that fail while the list's query is built; values
        # the database cannot compare fail later, when it counts the rows (still here).
        try:
            return super().get_changelist_instance(request)
        except UNCOMPARABLE as exc:
            if not set(request.GET) - {ERROR_FLAG}:
                raise  # the bare list failing is no parameter's fault
            raise IncorrectLookupParameters(exc) from exc

    def response_action(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        # The rows an action was asked for: keys of this table, as checkboxes send them. Django
        # filters `pk__in` on them unchecked (ValueError for "abc"; OverflowError on SQLite).
        for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            try:
                key_of(self.opts.pk, value)
            except ValidationError:
                raise BadRequest(f"{helpers.ACTION_CHECKBOX_NAME}: no key of the table") from None
        return super().response_action(request, queryset)

    def formfield_for_manytomany(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> forms.ModelMultipleChoiceField | None:  # type: ignore[type-arg]
        kwargs.setdefault("form_class", KeysInRangeMultipleChoiceField)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


def guarded(admin_class: type[admin.ModelAdmin] | None) -> type[admin.ModelAdmin]:  # type: ignore[type-arg]
    """`admin_class` (None: Django's default) with GuardedModelAdmin first in its bases, under
    its own name, so its own methods (UserAdmin's lookup_allowed) still run after ours."""
    if admin_class is None or admin_class is admin.ModelAdmin:
        return GuardedModelAdmin
    if issubclass(admin_class, GuardedModelAdmin):
        return admin_class
    namespace = {
        "__module__": admin_class.__module__,
        "__qualname__": admin_class.__qualname__,
        "__doc__": admin_class.__doc__,
    }
    return type(admin_class.__name__, (GuardedModelAdmin, admin_class), namespace)


class DomosAdminSite(admin.AdminSite):
    site_header = SITE_HEADER
    site_title = SITE_TITLE
    index_title = INDEX_TITLE

    def register(
        self,
        model_or_iterable: type[Model] | Any,
        admin_class: type[admin.ModelAdmin] | None = None,  # type: ignore[type-arg]
        **options: Any,
    ) -> None:
        super().register(model_or_iterable, guarded(admin_class), **options)


class DomosAdminConfig(AdminConfig):
    default_site = "services.web.admin_site.DomosAdminSite"
