"""Stand-in for ``modelrunner serve`` while the CLI does not exist: the platform configured from
``MODELRUNNER_*`` variables, served by uvicorn on ``MODELRUNNER_HOST:MODELRUNNER_PORT``."""

from __future__ import annotations

import uvicorn

from modelrunner.api.app import create_app
from modelrunner.platform import Platform
from modelrunner.settings import Settings


def main() -> None:
    settings = Settings()
    # As `modelrunner serve` runs it (access log included), so both measure the same server.
    uvicorn.run(create_app(Platform(settings)), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
