"""The admin site under the project's own name.

Django's AdminSite says "Администрирование Django" wherever a page is rendered without its
context; giving the default site our titles through AdminConfig.default_site (instead of
setting attributes on `admin.site` when the URLconf is imported) makes every page that uses
`each_context`, the overview included, carry them.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig

SITE_HEADER = "domos — администрирование"
SITE_TITLE = "domos"
INDEX_TITLE = "Данные сообщества"


class DomosAdminSite(admin.AdminSite):
    site_header = SITE_HEADER
    site_title = SITE_TITLE
    index_title = INDEX_TITLE


class DomosAdminConfig(AdminConfig):
    default_site = "services.web.admin_site.DomosAdminSite"
