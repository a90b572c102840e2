"""The whole schema: every service's tables on one metadata, and migrations to it."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

import services.alerts.models
import services.hl7v2.models
import services.indicators.manual
import services.indicators.models
import services.ingest.models
import services.regions.models
import shared.models
from shared.db import Base

# Importing a models module registers its tables on Base.metadata.
_MODEL_MODULES = (
    shared.models,
    services.ingest.models,
    services.indicators.models,
    services.indicators.manual,
    services.alerts.models,
    services.hl7v2.models,
    services.regions.models,
)

metadata = Base.metadata

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
