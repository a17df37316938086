"""How ``modelrunner worker`` talks to its server: calls that outlast a network outage, and the
artifact store reached through the server (api/workers_routes.py), so a worker needs nothing
but the server's URL and a token."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx

from modelrunner.artifacts.keys import UnsafeKey, clean_key
from modelrunner.artifacts.regular_files import RegularFile, open_regular
from modelrunner.artifacts.store import ArtifactStore, StoredFile
from modelrunner.errors import ModelrunnerError

log = logging.getLogger("modelrunner.worker")

_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_BACKOFF = (0.25, 5.0)  # first and longest wait between tries
_CHUNK = 1 << 20


class AttemptGone(ModelrunnerError):
    """The server no longer lets this worker act on the attempt: it ended there (declared lost
    while the worker was unreachable, cancelled) or the server restarted. Its result is dropped."""


class Refused(ModelrunnerError):
    """The server refused a call for good (a bad token, an unknown pool): retrying cannot help."""


def detail_of(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return detail if isinstance(detail, str) else response.text[:300]


class AttemptChannel:
    """The calls about one claimed attempt, with its callback token. Network errors and server
    errors are retried with backoff until ``patience`` runs out; a 401 or 409
    raises AttemptGone at once."""

    def __init__(
        self,
        server: str,
        attempt_id: int,
        token: str,
        *,
        patience: float = 600.0,
    ) -> None:
        self.attempt_id = attempt_id
        self.base = f"{server.rstrip('/')}/api/v1/attempts/{attempt_id}"
        self._http = httpx.Client(timeout=_TIMEOUT, headers={"Authorization": f"Bearer {token}"})
        self._patience = patience
        self.gone = threading.Event()

    def close(self) -> None:
        self._http.close()

    def once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One try; httpx.TransportError when the server cannot be reached, AttemptGone, Refused."""
        response = self._http.request(method, f"{self.base}{path}", **kwargs)
        self._check(response)
        return response

    def call(self, method: str, path: str, *, body: Callable[[], Any] | None = None, **kwargs: Any) -> httpx.Response:
        """Try until the server answers (``body()`` makes a fresh request body for each try)."""
        deadline = time.monotonic() + self._patience
        wait = _BACKOFF[0]
        while True:
            try:
                content = body() if body is not None else None
                try:
                    response = self._http.request(method, f"{self.base}{path}", content=content, **kwargs)
                finally:
                    if isinstance(content, io.IOBase):
                        content.close()
                if response.status_code < 500:
                    self._check(response)
                    return response
                problem = f"the server answered {response.status_code}"
            except httpx.TransportError as exc:
                problem = f"cannot reach the server: {exc}"
            if time.monotonic() + wait > deadline:
                raise ModelrunnerError(f"attempt {self.attempt_id}: {method} {path} failed: {problem}")
            log.warning("attempt %s: %s %s failed (%s); trying again", self.attempt_id, method, path, problem)
            time.sleep(wait)
            wait = min(wait * 2, _BACKOFF[1])

    def download(self, path: str, destination: Path) -> None:
        """Stream a file to ``destination``, trying again as ``call`` does."""
        deadline = time.monotonic() + self._patience
        wait = _BACKOFF[0]
        while True:
            try:
                with self._http.stream("GET", f"{self.base}{path}") as response:
                    if response.status_code < 500:
                        if response.status_code >= 400:
                            response.read()
                        self._check(response)
                        with destination.open("wb") as target:
                            for chunk in response.iter_bytes(_CHUNK):
                                target.write(chunk)
                        return
                    problem = f"the server answered {response.status_code}"
            except httpx.TransportError as exc:
                problem = f"cannot reach the server: {exc}"
            if time.monotonic() + wait > deadline:
                raise ModelrunnerError(f"attempt {self.attempt_id}: GET {path} failed: {problem}")
            log.warning("attempt %s: GET %s failed (%s); trying again", self.attempt_id, path, problem)
            time.sleep(wait)
            wait = min(wait * 2, _BACKOFF[1])

    def _check(self, response: httpx.Response) -> None:
        if response.status_code in (401, 409):
            self.gone.set()
            raise AttemptGone(f"the server refused attempt {self.attempt_id}: {detail_of(response)}")
        if response.status_code >= 400 and response.status_code < 500:
            raise Refused(f"the server refused {response.request.url.path}: {detail_of(response)}")


class ServerArtifacts(ArtifactStore):
    """The artifact store of ``store_url`` as a worker reaches it: every operation goes through
    the server with the attempt's token, which allows only what the attempt needs. An
    ArtifactStore, so that RemoteAttempt runs unchanged."""

    def __init__(self, channel: AttemptChannel, store_url: str) -> None:  # no fsspec: nothing is local
        self.url = store_url.rstrip("/")
        self._channel = channel

    def exists(self, key: str) -> bool:
        return bool(self.keys(key))

    def put_bytes(self, key: str, data: bytes) -> str:
        self._channel.call("PUT", f"/files/{key}", body=lambda: data)
        return self.uri(key)

    def get_bytes(self, uri: str) -> bytes:
        return self._channel.call("GET", f"/files/{self._key(uri)}").content

    def open(self, uri: str) -> IO[bytes]:
        raise NotImplementedError("a worker copies stored files with get_file")

    def get_file(self, uri: str, destination: Path) -> None:
        self._download(self._key(uri), destination)

    def put_file(self, local: Path, key: str, relative: str, expected: RegularFile | None = None) -> StoredFile:
        answer = self._channel.call("PUT", f"/files/{key}", body=lambda: open_regular(local, expected)).json()
        return StoredFile(relative, int(answer["size"]), str(answer["sha256"]), str(answer["uri"]))

    def get_folder(self, prefix: str, destination: Path) -> int:
        keys = self.keys(prefix)
        root = prefix.strip("/")
        for key in keys:
            self._download(key, destination / key[len(root) :].lstrip("/"))
        return len(keys)

    def keys(self, prefix: str) -> list[str]:
        answer = self._channel.call("GET", "/files", params={"prefix": prefix}).json()
        return [str(key) for key in answer["keys"]]

    def _download(self, key: str, destination: Path) -> None:
        clean_key(key)  # the server's answer, as anything from the network, names a file below here
        destination.parent.mkdir(parents=True, exist_ok=True)
        self._channel.download(f"/files/{key}", destination)

    def _key(self, uri: str) -> str:
        if not uri.startswith(self.url + "/"):
            raise UnsafeKey(f"{uri} is not in the server's artifact store {self.url}", uri=uri)
        return clean_key(uri[len(self.url) + 1 :])
