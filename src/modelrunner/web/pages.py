"""The web UI's pages: signing in and out, the models, a model with its run form.

Every page asks ``page_access`` what the caller may do, exactly as the API asks its ``Access``;
every POST checks the session's CSRF token first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from modelrunner.artifacts.uploads import UploadTooLarge
from modelrunner.auth.access import Access
from modelrunner.data import catalog
from modelrunner.engine import run_reads
from modelrunner.engine.cache_mode import CacheMode
from modelrunner.engine.scheduler import ScheduleOverview
from modelrunner.errors import Conflict, InvalidInput, SpecError, Unauthenticated
from modelrunner.spec.access_spec import Level
from modelrunner.spec.workspace import Model
from modelrunner.store.run_reads_queries import RunHeadline
from modelrunner.store.tables import DatasetVersionRow
from modelrunner.web import forms, run_lists
from modelrunner.web.pipeline_graph import structure_of
from modelrunner.web.rendering import PageRoute, flash, render
from modelrunner.web.run_form_data import scenario_pickers, uploaded_files
from modelrunner.web.session import PageAccess, checked_form, platform_of, sign_in, sign_out, viewed_model

router = APIRouter(route_class=PageRoute, include_in_schema=False)

RECENT_RUNS = 10
PINNABLE_VERSIONS = 50
_INPUT_PREFIX = "input."
_CACHE_FIELD = "run.cache"  # dotted, like the inputs' fields, to stay clear of parameter names
_TIMEOUT_FIELD = "run.timeout"  # the run's own timeout, where the model's overridable: allows one


@dataclass(frozen=True)
class ModelEntry:
    """A model as the models page lists it."""

    model: Model
    last_run: RunHeadline | None
    schedules: list[ScheduleOverview]


@dataclass(frozen=True)
class InputChoice:
    """An input of a model: its dataset's versions, newest first, to pin one of them."""

    name: str
    dataset: str
    versions: list[DatasetVersionRow]
    pinned: str  # "" for the newest


@router.get("/signin")
def signin_page(request: Request, next: str = "/") -> Response:
    return render(request, "signin.html", title="Sign in", next=_safe_next(next), username="")


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await checked_form(request)
    name, password = str(form.get("username", "")), str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "/")))
    try:
        sign_in(request, name.strip(), password)
    except Unauthenticated as exc:
        page = {"title": "Sign in", "next": target, "username": name, "message": exc.message}
        return render(request, "signin.html", 401, **page)
    return RedirectResponse(target, status_code=303)


@router.post("/signout")
async def signout(request: Request) -> Response:
    await checked_form(request)
    sign_out(request)
    flash(request, "You are signed out.")
    return RedirectResponse("/signin", status_code=303)


@router.get("/")
@router.get("/models")
def models_page(request: Request, access: PageAccess) -> Response:
    access.require_listing("listing models")
    platform = platform_of(request)
    models = [m for m in platform.workspace.models() if access.may(m.name, Level.VIEW)]
    try:
        schedules = platform.scheduler.overview()
    except SpecError:
        schedules = []  # a broken modelrunner.yaml: the models still list
    latest = run_reads.latest_runs(platform, access, [m.name for m in models])
    entries = [
        ModelEntry(model, latest.get(model.name), [s for s in schedules if s.model == model.name]) for model in models
    ]
    return render(request, "models.html", title="Models", entries=entries)


@router.get("/models/{name}")
def model_page(name: str, request: Request, access: PageAccess) -> Response:
    viewed_model(platform_of(request), access, name)
    return _model_page(request, access, name)


@router.post("/models/{name}/runs")
async def submit_run(name: str, request: Request, access: PageAccess) -> Response:
    form = await checked_form(request)
    platform = platform_of(request)
    schema = viewed_model(platform, access, name).spec.params
    access.require(name, Level.RUN, "submitting runs")
    texts = {key: str(value) for key, value in form.items() if isinstance(value, str)}
    try:
        texts.update(await uploaded_files(platform, schema, form))
    except UploadTooLarge as exc:
        return _model_page(request, access, name, texts, message=exc.message, status_code=413)
    params, errors = forms.params_of(schema, texts)
    pins = {key.removeprefix(_INPUT_PREFIX): v for key, v in texts.items() if key.startswith(_INPUT_PREFIX) and v}
    cache = texts.get(_CACHE_FIELD, CacheMode.USE.value)
    if cache not in {mode.value for mode in CacheMode}:
        return _model_page(request, access, name, texts, message=f"unknown cache choice '{cache}'", status_code=422)
    if errors:
        return _model_page(request, access, name, texts, errors, status_code=422)
    timeout = texts.get(_TIMEOUT_FIELD, "").strip()
    try:
        submission = platform.submit(
            name,
            params,
            CacheMode(cache),
            inputs=pins,
            submitter=access.principal,
            overrides={"timeout": timeout} if timeout else None,
        )
    except InvalidInput as exc:
        by_field, others = forms.errors_by_field(schema, exc.problems)
        return _model_page(request, access, name, texts, by_field, message="; ".join(others), status_code=422)
    except Conflict as exc:
        return _model_page(request, access, name, texts, message=exc.message, status_code=409)
    return RedirectResponse(f"/runs/{submission.run.id}", status_code=303)


def _model_page(
    request: Request,
    access: Access,
    name: str,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    *,
    message: str = "",
    status_code: int = 200,
) -> Response:
    platform = platform_of(request)
    model = platform.workspace.model(name)
    values = values or {}
    inputs = []
    with platform.database.read() as session:
        for input_name, dataset in model.spec.inputs.items():
            versions = catalog.versions(session, dataset, offset=0, limit=PINNABLE_VERSIONS)
            pinned = values.get(_INPUT_PREFIX + input_name, "")
            inputs.append(InputChoice(input_name, dataset, versions, pinned))
    runs = run_reads.recent_runs(platform, access, name, RECENT_RUNS, "viewing a model")
    fields = forms.fields_of(model.spec.params, values or None, errors)
    with platform.database.read() as session:
        fields = scenario_pickers(session, model.spec, fields)
    context: dict[str, Any] = {
        "title": model.spec.title or model.name,
        "model": model,
        "fields": fields,
        "max_upload_bytes": platform.settings.max_upload_bytes,
        "inputs": inputs,
        "runs": runs,
        "shown_params": run_lists.telling_params(runs),
        "may_run": access.may(name, Level.RUN),
        "graph": structure_of(model.spec),
        "cache": values.get(_CACHE_FIELD, CacheMode.USE.value),
        "timeout": values.get(_TIMEOUT_FIELD, ""),
    }
    if message:
        context["message"] = message
    elif errors:
        context["message"] = "Some parameters need a change; see the messages next to them."
    return render(request, "model.html", status_code, **context)


def _safe_next(target: str) -> str:
    """Only a path of this site: never another host (``//host``, ``https://...``, ``/\\host``)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
