"""The HTTP client of the command line: one method per API call, and the one place where error
responses and unreachable servers become messages a user can act on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from modelrunner.api import API_PREFIX
from modelrunner.errors import ModelrunnerError

DEFAULT_SERVER = "http://127.0.0.1:8000"
API = API_PREFIX
TOKEN_VARIABLE = "MODELRUNNER_TOKEN"
_CREATE_TOKEN = "create one on the server's machine with `modelrunner tokens create --user NAME`"
# Paths of the request location FastAPI puts first; users know fields, not request parts.
_LOCATION_PARTS = {"body", "query", "path", "header"}


class ApiError(ModelrunnerError):
    """The server answered with an error; ``message`` is what to show, ``detail`` the answer's
    ``detail`` as sent (a string, or FastAPI's list of located errors), for callers that act on it."""

    def __init__(self, message: str, status_code: int, detail: Any = None) -> None:
        super().__init__(message, status_code=status_code)
        self.status_code = status_code
        self.detail = detail


class ServerUnreachable(ModelrunnerError):
    """No modelrunner server answers at the URL."""


@dataclass(frozen=True)
class LogChunk:
    """Log bytes after an offset, the offset to ask for next, the log's size so far (the server
    answers a page at a time: below it, there is more) and the run's status."""

    data: bytes
    next_offset: int
    size: int
    run_status: str


class Client:
    """A synchronous client of one modelrunner server's HTTP API (``/api/v1``).

    Every request carries ``Authorization: Bearer <token>`` when a token is given, or else when
    MODELRUNNER_TOKEN is set (this is the one place the command line reads it). Every method
    raises ApiError for an error response and ServerUnreachable when nothing answers; both carry
    a message meant for the user.
    """

    def __init__(self, server: str, timeout: float = 30.0, token: str | None = None) -> None:
        self.server = server.rstrip("/")
        token = (token if token is not None else os.environ.get(TOKEN_VARIABLE, "")).strip()
        self._signed_in = bool(token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            self._http = httpx.Client(base_url=self.server, timeout=timeout, headers=headers)
        except httpx.InvalidURL as exc:
            raise ModelrunnerError(f"the server URL {server!r} is not valid: {exc}") from exc

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- models -------------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("GET", "/models")
        return result

    def model(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/models/{name}")
        return result

    def submit(
        self,
        model: str,
        params: dict[str, Any],
        cache: str,
        max_age: float | None,
        inputs: dict[str, str] | None = None,
        backend: str | None = None,
        *,
        overrides: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"params": params, "cache": cache}
        if overrides:
            body["overrides"] = overrides
        if max_age is not None:
            body["max_age"] = max_age
        if inputs:
            body["inputs"] = inputs
        if backend is not None:
            body["backend"] = backend
        result: dict[str, Any] = self._json("POST", f"/models/{model}/runs", json=body)
        return result

    def submit_with_files(self, model: str, body: dict[str, Any], files: dict[str, Path]) -> dict[str, Any]:
        """Submit a run whose file parameters are the ``files`` (by parameter name), uploaded
        with it; a progress bar shows big ones."""
        from modelrunner.cli.file_uploads import upload_parts

        with upload_parts(body, files) as (data, parts):
            result: dict[str, Any] = self._json(
                "POST", f"/models/{model}/runs/upload", data=data, files=parts, timeout=None
            )
        return result

    def submit_batch(self, model: str, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Submit runs together, each a single submit's body; each one's answer, in order. The
        server takes all or none: ApiError 422 lists the refused ones by index."""
        result: dict[str, Any] = self._json("POST", f"/models/{model}/runs/batch", json={"runs": runs})
        answers: list[dict[str, Any]] = result["runs"]
        return answers

    # --- datasets -----------------------------------------------------------------------------

    def datasets(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("GET", "/datasets")
        return result

    def dataset(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/datasets/{name}")
        return result

    def dataset_versions(self, name: str, limit: int, offset: int = 0) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json(
            "GET", f"/datasets/{name}/versions", params={"limit": limit, "offset": offset}
        )
        return result

    def dataset_version(self, name: str, version: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/datasets/{name}/versions/{quote(version, safe='')}")
        return result

    def delete_dataset_versions(self, name: str) -> int:
        """How many versions were removed; ApiError 409 while runs using the dataset are unfinished."""
        result: dict[str, Any] = self._json("DELETE", f"/datasets/{name}/versions")
        return int(result["deleted"])

    def change_dataset(
        self, name: str, files: list[tuple[str, Path]], message: str, base: str | None, remove: list[str] | None = None
    ) -> dict[str, Any]:
        """Put ``files`` ((path in the dataset, local file)) into a managed dataset and ``remove``
        paths of it, as one version."""
        from modelrunner.cli.file_uploads import dataset_parts

        fields: dict[str, Any] = {"message": message, **({"base": base} if base else {})}
        if remove:
            fields["remove"] = remove
        with dataset_parts(files) as parts:
            result: dict[str, Any] = self._json(
                "POST", f"/datasets/{name}/files", data=fields, files=parts, timeout=None
            )
        return result

    def dataset_diff(self, name: str, old: str, new: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/datasets/{name}/diff", params={"from": old, "to": new})
        return result

    def request_sync(self, name: str, walk_all: bool) -> dict[str, Any]:
        """The sync queued now, or the one already in progress (``joined`` true)."""
        result: dict[str, Any] = self._json("POST", f"/datasets/{name}/sync", json={"all": walk_all})
        return result

    def sync(self, name: str, sync_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/datasets/{name}/syncs/{sync_id}")
        return result

    # --- schedules and triggers ---------------------------------------------------------------

    def backends(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("GET", "/backends")
        return result

    def schedules(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("GET", "/schedules")
        return result

    def run_schedule(self, name: str) -> dict[str, Any]:
        """Fire the schedule now; the firing (``submitted`` with run ids, or ``failed``)."""
        result: dict[str, Any] = self._json("POST", f"/schedules/{quote(name, safe='/')}/run")
        return result

    def schedule_firings(self, name: str, limit: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json(
            "GET", f"/schedules/{quote(name, safe='/')}/firings", params={"limit": limit}
        )
        return result

    def triggers(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("GET", "/triggers")
        return result

    # --- runs ---------------------------------------------------------------------------------

    def runs(self, limit: int, **filters: str | int | list[str] | None) -> list[dict[str, Any]]:
        """At most ``limit`` runs, newest first, matching ``filters``: the query parameters of
        ``GET /runs`` (model, status, parent, submitter, backend, param); None leaves one out."""
        query: dict[str, Any] = {name: value for name, value in filters.items() if value is not None}
        page: dict[str, Any] = self._json("GET", "/runs", params={**query, "limit": limit})
        items: list[dict[str, Any]] = page["items"]
        return items

    def run(self, run_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/runs/{run_id}")
        return result

    def rerun(self, run_id: int, from_step: str | None, only_step: str | None) -> dict[str, Any]:
        body = {key: value for key, value in (("from", from_step), ("only", only_step)) if value is not None}
        result: dict[str, Any] = self._json("POST", f"/runs/{run_id}/rerun", json=body)
        return result

    def explain(self, run_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/runs/{run_id}/explain")
        return result

    def cancel(self, run_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", f"/runs/{run_id}/cancel")
        return result

    def logs(self, run_id: int, offset: int) -> LogChunk:
        response = self._request("GET", f"{API}/runs/{run_id}/logs", params={"offset": offset})
        next_offset = int(response.headers.get("X-Log-Offset", offset + len(response.content)))
        return LogChunk(
            data=response.content,
            next_offset=next_offset,
            size=int(response.headers.get("X-Log-Size", next_offset)),
            run_status=response.headers.get("X-Run-Status", ""),
        )

    def outputs(self, run_id: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("GET", f"/runs/{run_id}/outputs")
        return result

    def partial_outputs(self, run_id: int, attempt: int) -> list[dict[str, Any]]:
        """What attempt ``attempt`` of the run had written before it failed, timed out or was cancelled."""
        result: list[dict[str, Any]] = self._json("GET", f"/runs/{run_id}/attempts/{attempt}/outputs")
        return result

    @contextmanager
    def download(self, url: str) -> Iterator[Iterator[bytes]]:
        """Stream the file at ``url`` (an API path such as an output's ``url``) in chunks."""
        with self._translated(), self._http.stream("GET", url, timeout=None) as response:
            if response.is_error:
                response.read()
                raise self._error(response)
            yield response.iter_bytes(1 << 16)

    # --- export -------------------------------------------------------------------------------

    def export_rows(self, kind: str, model: str | None, schedule: str | None) -> list[dict[str, Any]]:
        """The rows of ``/export/{kind}`` (``status`` or ``runtimes``)."""
        page: dict[str, Any] = self._json("GET", f"/export/{kind}", params=_export_query(model, schedule))
        items: list[dict[str, Any]] = page["items"]
        return items

    def export_csv(self, kind: str, model: str | None, schedule: str | None) -> str:
        """The CSV text of ``/export/{kind}``, header row first."""
        query = {**_export_query(model, schedule), "format": "csv"}
        return self._request("GET", f"{API}/export/{kind}", params=query).text

    # --- plumbing -----------------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, f"{API}{path}", **kwargs)
        if not _is_json(response):
            raise self._not_the_api(response)
        try:
            return response.json()
        except ValueError as exc:
            raise self._not_the_api(response) from exc

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        with self._translated():
            response = self._http.request(method, url, **kwargs)
        if response.is_error:
            raise self._error(response)
        return response

    def _error(self, response: httpx.Response) -> ApiError:
        """The server's message; for a 401, also what to do about the token. A 403's message
        already names the permission that is missing."""
        if not _is_json(response):
            return self._not_the_api(response)
        detail = _detail_of(response)
        message = _error_message(response, detail)
        if response.status_code == 401:
            if self._signed_in:
                message += (
                    f"\nthe server refused the token in {TOKEN_VARIABLE}; set it to a valid token ({_CREATE_TOKEN})"
                )
            else:
                message += f"\nset {TOKEN_VARIABLE} to an API token ({_CREATE_TOKEN})"
        return ApiError(message, response.status_code, detail)

    def _not_the_api(self, response: httpx.Response) -> ApiError:
        """Another web server (a proxy's error page, a site) answered: say so in one line, never
        its page."""
        content_type = response.headers.get("content-type", "").partition(";")[0].strip() or "no content type"
        return ApiError(
            f"the server at {self.server} did not answer as the modelrunner API "
            f"({response.status_code} {response.reason_phrase}, {content_type}); "
            "is --server or MODELRUNNER_SERVER the address of `modelrunner serve`?",
            response.status_code,
        )

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServerUnreachable(
                f"cannot reach the modelrunner server at {self.server} "
                "(is `modelrunner serve` running? set --server or MODELRUNNER_SERVER)"
            ) from exc
        except httpx.UnsupportedProtocol as exc:
            raise ModelrunnerError(f"the server URL {self.server!r} must start with http:// or https://") from exc
        except httpx.TimeoutException as exc:
            raise ServerUnreachable(f"the modelrunner server at {self.server} did not answer in time") from exc
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"lost the connection to the modelrunner server at {self.server}: {exc}") from exc
        except httpx.InvalidURL as exc:
            raise ModelrunnerError(f"the server URL {self.server!r} is not valid: {exc}") from exc

    # --- notifications ------------------------------------------------------------------------

    def subscriptions(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("GET", "/subscriptions")
        return result

    def subscribe(self, body: dict[str, Any]) -> dict[str, Any]:
        """The new subscription; ``secret`` holds a generated webhook secret, shown this once."""
        result: dict[str, Any] = self._json("POST", "/subscriptions", json=body)
        return result

    def unsubscribe(self, subscription_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._json("DELETE", f"/subscriptions/{subscription_id}")
        return result

    def deliveries(self, subscription: int | None, statuses: list[str], limit: int) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"limit": limit, "status": statuses}
        if subscription is not None:
            query["subscription"] = subscription
        result: list[dict[str, Any]] = self._json("GET", "/deliveries", params=query)
        return result

    def delivery(self, delivery_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/deliveries/{delivery_id}")
        return result


def _is_json(response: httpx.Response) -> bool:
    """Whether the answer says it is JSON, as every answer of the API's JSON routes and errors does."""
    content_type = str(response.headers.get("content-type", "")).partition(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


def _detail_of(response: httpx.Response) -> Any:
    """FastAPI's ``detail`` of an error response (string or list); None when it has none."""
    try:
        return response.json().get("detail")
    except (ValueError, AttributeError):
        return None


def _error_message(response: httpx.Response, detail: Any) -> str:
    """The user-facing message of an error response from its ``detail``."""
    if isinstance(detail, list) and detail:
        return "\n".join(_validation_line(item) for item in detail)
    if isinstance(detail, str) and detail:
        return detail
    text = response.text.strip()
    return f"the server answered {response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")


def _validation_line(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    loc = [str(part) for part in item.get("loc", [])]
    if loc and loc[0] in _LOCATION_PARTS:
        loc = loc[1:]
    where = ".".join(loc)
    message = str(item.get("msg", "is not valid"))
    # Domain errors already start with the field they name ("params.n: ..."); don't say it twice.
    if not where or message.startswith(f"{where}:"):
        return message
    return f"{where}: {message}"


def _export_query(model: str | None, schedule: str | None) -> dict[str, str]:
    query = {"model": model, "schedule": schedule}
    return {key: value for key, value in query.items() if value is not None}
