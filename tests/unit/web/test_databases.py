"""DATABASES for both DB_TYPEs and the router's choices."""

from __future__ import annotations

from runtime.config import Settings
from runtime.logical_databases import DOMAIN_DATABASES
from services.web.databases import django_databases
from services.web.router import DomainRouter


def test_sqlite_aliases_point_at_each_logical_file(tmp_path: object) -> None:
    settings = Settings.from_env({"DB_TYPE": "sqlite", "DOMOS_DATA_DIR": "/srv/data"}).db
    databases = django_databases(settings)
    assert set(databases) == {"default", *DOMAIN_DATABASES}
    assert databases["default"]["NAME"] == "/srv/data/web/db.sqlite3"
    assert databases["main"]["NAME"] == "/srv/data/bot/tgbot/databases/data.db"
    assert databases["advert"]["NAME"] == "/srv/data/api/advert_tokens.db"
    assert all(d["ENGINE"] == "django.db.backends.sqlite3" for d in databases.values())


def test_postgres_aliases_share_one_database_with_a_schema_each() -> None:
    settings = Settings.from_env(
        {"DB_TYPE": "postgres", "DATABASE_URL": "postgresql://domos:p%40ss@db:6432/domos"}
    ).db
    databases = django_databases(settings)
    assert {d["NAME"] for d in databases.values()} == {"domos"}
    assert databases["default"]["PASSWORD"] == "p@ss"
    assert databases["default"]["PORT"] == "6432"
    paths = {alias: d["OPTIONS"]["options"] for alias, d in databases.items()}
    assert paths["default"] == "-c search_path=django"
    assert paths["main"] == "-c search_path=main"
    assert paths["contract"] == "-c search_path=contract"
    assert paths["useful"] == paths["nmarket"] == paths["audio"] == "-c search_path=bot"


class _Main:
    logical_db = "main"


class _Advert:
    logical_db = "advert"


class _DjangoModel:
    pass


def test_router_sends_models_to_their_logical_db_and_migrates_only_django() -> None:
    router = DomainRouter()
    assert router.db_for_read(_Main) == "main"
    assert router.db_for_write(_Advert) == "advert"
    assert router.db_for_read(_DjangoModel) is None
    assert router.allow_relation(_Main(), _Main()) is True
    assert router.allow_relation(_Main(), _Advert()) is False
    assert router.allow_relation(_DjangoModel(), _DjangoModel()) is None
    assert router.allow_migrate("default", "auth") is True
    assert router.allow_migrate("main", "auth") is False
    assert router.allow_migrate("default", "domain") is False
