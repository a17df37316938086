"""The datasets pages: the datasets a caller may see, and one dataset with its recorded versions.

A dataset is reached through the models that read it, exactly as in the API: the permission
checks are the API's own (``auth/dataset_access``), and what a page shows of a dataset is the API's
response body (``DatasetSummaryOut``, ``DatasetDetail``), so storage option values and the user
info of URLs stay hidden here too.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from modelrunner.api.schemas import DatasetDetail, DatasetSummaryOut, DatasetVersionOut
from modelrunner.auth.dataset_access import dataset_readers, sees_dataset
from modelrunner.data import catalog
from modelrunner.platform import Platform
from modelrunner.spec.workspace import unknown_dataset
from modelrunner.store.row_ids import Position
from modelrunner.web.rendering import PageRoute, render
from modelrunner.web.session import PageAccess, platform_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)

VERSIONS_PER_PAGE = 50
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
    )
