"""``modelrunner serve``'s HTTP server: uvicorn, told to let the platform know at once when it is
asked to stop.

uvicorn finishes the requests in flight before it stops the app, and two kinds are held open on
purpose: a run page's event stream (up to five minutes) and a worker's claim (up to 20 s). Told
of the stop when the signal comes, both end at once (the browser and the worker connect again to
the next server), so a stop is not held up by them. Any other request still going after
``_GRACE_SECONDS`` is cut, so that the platform always gets to stop its runs cleanly."""

from __future__ import annotations

from types import FrameType

import uvicorn

from modelrunner.api.app import create_app
from modelrunner.platform import Platform

_GRACE_SECONDS = 10


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, platform: Platform) -> None:
        super().__init__(config)
        self._platform = platform

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._platform.stopping.set()
        super().handle_exit(sig, frame)


def serve_http(platform: Platform, host: str, port: int) -> None:
    """Serve the platform's app until SIGINT or SIGTERM. uvicorn's lines, its access log among
    them, go wherever the process's log is configured (see process_log)."""
    config = uvicorn.Config(
        create_app(platform),
        host=host,
        port=port,
        log_config=None,  # uvicorn's own handlers and levels would bypass the process's
        log_level=None,
        timeout_graceful_shutdown=_GRACE_SECONDS,
    )
    _Server(config, platform).run()
