"""The catalogue of logical databases: legacy SQLite file, its env var, and its PostgreSQL schema.

The legacy system keeps eight SQLite files. Each is a logical database; in PostgreSQL each maps to
a schema of one database. The four bot files share schema `bot` (their table names are unique).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LogicalDatabase:
    name: str
    path_variable: str
    default_path: str  # relative to DOMOS_DATA_DIR
    pg_schema: str


_ALL = (
    LogicalDatabase("main", "MAIN_DB_PATH", "bot/tgbot/databases/data.db", "main"),
    LogicalDatabase("advert", "ADVERT_TOKENS_DB_PATH", "api/advert_tokens.db", "advert"),
    LogicalDatabase("contract", "CONTRACT_TOKENS_DB_PATH", "api/contract_tokens.db", "contract"),
    LogicalDatabase("audio", "AUDIO_DB_PATH", "bot/tgbot/databases/downloaded_audio.db", "bot"),
    LogicalDatabase("nmarket", "NMARKET_DB_PATH", "bot/tgbot/databases/nmarket.db", "bot"),
    LogicalDatabase(
        "useful", "USEFUL_MESSAGES_DB_PATH", "bot/tgbot/databases/useful_messages.db", "bot"
    ),
    LogicalDatabase("tradeagent", "TRADEAGENT_DB_PATH", "bot/tgbot/databases/tradeagent.db", "bot"),
    LogicalDatabase("django", "DJANGO_DB_PATH", "web/db.sqlite3", "django"),
)

#: Every logical database by name, in a stable order.
LOGICAL_DATABASES: dict[str, LogicalDatabase] = {db.name: db for db in _ALL}

#: The logical databases whose schema domos' own migrations manage (Django manages its own).
DOMAIN_DATABASES: tuple[str, ...] = tuple(name for name in LOGICAL_DATABASES if name != "django")
