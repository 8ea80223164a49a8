from __future__ import annotations

from django.apps import AppConfig


class DomainConfig(AppConfig):
    name = "services.web.domain"
    label = "domain"
    verbose_name = "Данные сообщества"
