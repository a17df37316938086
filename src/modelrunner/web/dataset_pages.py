"""The datasets pages: the datasets a caller may see, and one dataset with its recorded versions.

A dataset is reached through the models that read it, exactly as in the API: the permission
checks are the API's own (``auth/dataset_access``), and what a page shows of a dataset is the API's
response body (``DatasetSummaryOut``, ``DatasetDetail``), so storage option values and the user
info of URLs stay hidden here too.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from modelrunner.api.schemas import DatasetDetail, DatasetSummaryOut, DatasetVersionOut
from modelrunner.auth.access import Access
from modelrunner.auth.dataset_access import dataset_readers, require_dataset, sees_dataset
from modelrunner.data import catalog
from modelrunner.data.managed_writes import Put, TooLarge
from modelrunner.data.version_diff import diff
from modelrunner.platform import Platform
from modelrunner.spec.access_spec import Level
from modelrunner.spec.workspace import unknown_dataset
from modelrunner.store.row_ids import Position
from modelrunner.web.rendering import PageRoute, flash, render
from modelrunner.web.session import CSRF_FIELD, PageAccess, check_csrf, platform_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)

VERSIONS_PER_PAGE = 50
_MAX_FILES = 1000
# Shown in their own rows of the page rather than among the source's settings.
_NOT_SOURCE_SETTINGS = {"source", "description", "poll", "option_keys"}


@router.get("/datasets")
def datasets_page(request: Request, access: PageAccess) -> Response:
    access.require_listing("listing datasets")
    platform = platform_of(request)
    with platform.database.read() as session:
        summaries = catalog.dataset_summaries(session, platform.workspace)
    readers = dataset_readers(platform.workspace)
    shown = [DatasetSummaryOut.of(s) for s in summaries if sees_dataset(access, readers.get(s.name, []))]
    return render(request, "datasets.html", title="Datasets", datasets=shown)


def readers_of(platform: Platform, dataset: str) -> list[str]:
    return dataset_readers(platform.workspace).get(dataset, [])


@router.get("/datasets/{name}")
def dataset_page(name: str, request: Request, access: PageAccess, offset: Position = 0) -> Response:
    """The dataset with a page of its versions, newest data first (``offset`` skips the newest)."""
    platform = platform_of(request)
    # A dataset the caller may not see is answered exactly as an unknown one: the page never
    # tells whether it exists, nor which models read it.
    if name not in platform.workspace.datasets() or not sees_dataset(access, readers_of(platform, name)):
        access.require_signed_in("viewing a dataset")
        raise unknown_dataset(name)
    offset = max(0, offset)
    with platform.database.read() as session:
        detail = DatasetDetail.of(catalog.dataset_summary(session, platform.workspace, name))
        # One more than a page: whether there is a next page, without counting again.
        rows = catalog.versions(session, name, offset=offset, limit=VERSIONS_PER_PAGE + 1)
    versions = [DatasetVersionOut.of(row) for row in rows]
    settings = {key: value for key, value in detail.spec.items() if key not in _NOT_SOURCE_SETTINGS}
    if isinstance(settings.get("write"), dict):  # a managed dataset's write rules: glob -> groups
        settings["write"] = [f"{glob}: {', '.join(groups) or 'nobody'}" for glob, groups in settings["write"].items()]
    return render(
        request,
        "dataset.html",
        title=f"Dataset {name}",
        dataset=detail,
        settings=settings,
        option_keys=detail.spec.get("option_keys", []),
        versions=versions[:VERSIONS_PER_PAGE],
        offset=offset,
        previous_offset=max(0, offset - VERSIONS_PER_PAGE) if offset else None,
        next_offset=offset + VERSIONS_PER_PAGE if len(versions) > VERSIONS_PER_PAGE else None,
        # Only the readers the caller may view: the others are not theirs to know of.
        readers=access.visible(readers_of(platform, name)),
        managed=detail.source == "managed",
        may_write=detail.source == "managed" and _may_write(platform, access, name),
        max_upload_bytes=platform.settings.max_upload_bytes,
    )


@router.get("/datasets/{name}/diff")
def diff_page(name: str, request: Request, access: PageAccess) -> Response:
    """Files added, removed and changed between the versions ``from`` and ``to`` (unique prefixes)."""
    platform = platform_of(request)
    if name not in platform.workspace.datasets() or not sees_dataset(access, readers_of(platform, name)):
        access.require_signed_in("viewing a dataset")
        raise unknown_dataset(name)
    old, new = request.query_params.get("from", ""), request.query_params.get("to", "")
    with platform.database.read() as session:
        found = diff(catalog.version(session, name, old), catalog.version(session, name, new))
    return render(request, "dataset_diff.html", title=f"Dataset {name}: changes", name=name, diff=found)


@router.post("/datasets/{name}/files")
async def put_files(name: str, request: Request, access: PageAccess) -> Response:
    """The upload form of a managed dataset's page: its files become one new version."""
    platform = platform_of(request)
    await run_in_threadpool(require_dataset, platform.workspace, access, name, Level.RUN, "writing a dataset")
    async with request.form(max_files=_MAX_FILES, max_fields=_MAX_FILES) as form:
        check_csrf(request, form.get(CSRF_FIELD))
        folder = str(form.get("folder") or "").strip().strip("/")
        puts = [
            Put(f"{folder}/{value.filename}" if folder else value.filename, value.file)
            for value in form.getlist("file")
            if isinstance(value, UploadFile) and value.filename
        ]
        if not puts:
            flash(request, "Choose at least one file to put into the dataset.")
            return RedirectResponse(f"/datasets/{name}", status_code=303)
        message = str(form.get("message") or "")
        try:
            change = await run_in_threadpool(
                lambda: platform.managed.change(name, access.principal, put=puts, message=message)
            )
        except TooLarge as exc:
            flash(request, exc.message)
            return RedirectResponse(f"/datasets/{name}", status_code=303)
    if change.version is None:
        flash(request, "No change: the dataset already holds these files.")
    else:
        flash(request, f"New version {change.version.version[:12]} ({len(puts)} file(s) put).")
    return RedirectResponse(f"/datasets/{name}", status_code=303)


def _may_write(platform: Platform, access: Access, name: str) -> bool:
    return access.principal.is_admin or any(access.may(m, Level.RUN) for m in readers_of(platform, name))
