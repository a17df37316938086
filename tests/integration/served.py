"""A platform started in the test process behind a real HTTP server (uvicorn on a free port), for
backends whose attempts run elsewhere and call the server back (progress, workers)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from modelrunner.platform import Platform
from modelrunner.settings import Settings
from tests.conftest import free_port
from tests.identities import token_for
from tests.integration.runs_api import wait_until


class Served:
    """A started platform behind uvicorn on a free port, and an HTTP client of its first admin."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from modelrunner.api.app import create_app

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.platform = Platform(settings.model_copy(update={"public_url": self.url}))
        config = uvicorn.Config(create_app(self.platform), host="127.0.0.1", port=port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_until(lambda: self._server.started, 30, "the API answers")
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token_for(self.platform.database, 'admin')}"},
            timeout=30,
        )

    def submit(self, model: str, params: dict[str, Any]) -> int:
        response = self.http.post(f"/api/v1/models/{model}/runs", json={"params": params})
        assert response.status_code == 201, response.text
        run_id: int = response.json()["id"]
        return run_id

    def events(self, run_id: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.http.get(f"/api/v1/runs/{run_id}/events").json()["items"]
        return items

    def stop(self) -> None:
        self.http.close()
        self._server.should_exit = True
        self._thread.join(30)


def read_pids(path: Path) -> list[int]:
    """The pids a sleeper wrote (one line per execution), complete lines only."""
    text = path.read_text() if path.exists() else ""
    return [int(line) for line in text.splitlines() if line.strip().isdigit()] if text.endswith("\n") else []
