"""Settings for commands that open the store themselves: flags over ``MODELRUNNER_*`` variables."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from modelrunner.errors import ModelrunnerError

if TYPE_CHECKING:
    from modelrunner.settings import Settings


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


def masked_url(url: str) -> str:
    """A database URL safe to print: any password replaced by ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
