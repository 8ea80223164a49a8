"""Building the botapi app from the environment, with logging configured, once per process."""

from __future__ import annotations

import dataclasses
import os

from flask import Flask

from runtime.config import Settings
from runtime.logging import configure_logging
from services.botapi.app import create_app
from services.botapi.settings import BotApiSettings


def program_settings() -> Settings:
    settings = Settings.from_env()
    if "DOMOS_PROGRAM" not in os.environ:
        settings = dataclasses.replace(settings, program="botapi")
    return settings


def build_app() -> Flask:
    settings = program_settings()
    configure_logging(settings)
    return create_app(settings, BotApiSettings.from_env())
