"""Settings for commands that open the store themselves: flags over ``MODELRUNNER_*`` variables."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from modelrunner.errors import ModelrunnerError

if TYPE_CHECKING:
    from modelrunner.settings import Settings
    from modelrunner.store.database import Database


def build_settings(**flags: Any) -> Settings:
    """Settings from the environment, with every flag that was given (not None) on top."""
    # pydantic-settings is slow to import; commands that talk to a server never need it.
    from pydantic import ValidationError

    from modelrunner.settings import Settings

    overrides = {name: value for name, value in flags.items() if value is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [f"MODELRUNNER_{'_'.join(map(str, err['loc'])).upper()}: {err['msg']}" for err in exc.errors()]
        raise ModelrunnerError("invalid settings:\n" + "\n".join(lines)) from exc


@contextmanager
def opened_database(settings: Settings) -> Iterator[Database]:
    """The store ``settings`` name, disposed of when the block ends; a bad URL or a database error
    inside the block becomes one ModelrunnerError naming the (masked) URL."""
    from sqlalchemy.exc import SQLAlchemyError

    from modelrunner.errors import StoreError
    from modelrunner.store.database import Database

    shown = masked_url(settings.resolved_database_url)
    try:
        database = Database(settings.resolved_database_url)
    except (SQLAlchemyError, ImportError) as exc:
        raise ModelrunnerError(f"cannot use the database URL {shown}: {exc}") from exc
    try:
        yield database
    except SQLAlchemyError as exc:
        raise ModelrunnerError(f"cannot use the database {shown}: {getattr(exc, 'orig', None) or exc}") from exc
    except StoreError as exc:
        raise ModelrunnerError(f"cannot use the database {shown}: {exc.message}") from exc
    finally:
        database.dispose()


def masked_url(url: str) -> str:
    """A database URL safe to print: any password replaced by ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
