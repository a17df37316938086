"""How a route reaches the platform of the running app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from modelrunner.platform import Platform


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(_platform)]
