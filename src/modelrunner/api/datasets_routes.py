"""/api/v1/datasets: the workspace's datasets, their recorded versions, and syncs that look for new ones."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response

from modelrunner.api.deps import AccessDep, PlatformDep
from modelrunner.api.schemas import (
    DatasetDetail,
    DatasetSummaryOut,
    DatasetVersionDetail,
    DatasetVersionOut,
    DeletedVersions,
    SyncOut,
    SyncRequest,
    SyncStarted,
)
from modelrunner.auth.dataset_access import dataset_readers, require_dataset, sees_dataset
from modelrunner.data import catalog
from modelrunner.spec.access_spec import Level
from modelrunner.store.row_ids import Position, RowId

router = APIRouter(prefix="/datasets", tags=["datasets"])

_UNKNOWN_DATASET: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown dataset"}}
_BROKEN_WORKSPACE: dict[int | str, dict[str, Any]] = {422: {"description": "modelrunner.yaml is broken"}}

DatasetName = Annotated[str, Path(description="The dataset's name in modelrunner.yaml")]


@router.get(
    "",
    response_model=list[DatasetSummaryOut],
    summary="List the datasets of the workspace",
    responses=_BROKEN_WORKSPACE,
)
def list_datasets(platform: PlatformDep, access: AccessDep) -> list[DatasetSummaryOut]:
    """Every dataset `modelrunner.yaml` declares that a model the caller may view reads, by name,
    with its number of versions, its newest version and its last sync."""
    access.require_listing("listing datasets")
    with platform.database.read() as session:
        summaries = catalog.dataset_summaries(session, platform.workspace)
    readers = dataset_readers(platform.workspace)
    return [DatasetSummaryOut.of(s) for s in summaries if sees_dataset(access, readers.get(s.name, []))]


@router.get(
    "/{name}",
    response_model=DatasetDetail,
    summary="A dataset: where its data lives, its newest version and last sync",
    responses={**_UNKNOWN_DATASET, **_BROKEN_WORKSPACE},
)
def get_dataset(name: DatasetName, platform: PlatformDep, access: AccessDep) -> DatasetDetail:
    """Storage options are listed by key only: their values may hold credentials."""
    require_dataset(platform.workspace, access, name, Level.VIEW, "viewing a dataset")
    with platform.database.read() as session:
        return DatasetDetail.of(catalog.dataset_summary(session, platform.workspace, name))


@router.get(
    "/{name}/versions",
    response_model=list[DatasetVersionOut],
    summary="The dataset's recorded versions, newest data first",
    responses=_UNKNOWN_DATASET,
)
def list_versions(
    name: DatasetName,
    platform: PlatformDep,
    access: AccessDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[Position, Query(description="How many of the newest versions to skip")] = 0,
) -> list[DatasetVersionOut]:
    require_dataset(platform.workspace, access, name, Level.VIEW, "listing a dataset's versions")
    with platform.database.read() as session:
        return [DatasetVersionOut.of(row) for row in catalog.versions(session, name, offset=offset, limit=limit)]


@router.get(
    "/{name}/versions/{version}",
    response_model=DatasetVersionDetail,
    summary="One version of the dataset, with its files",
    responses={
        404: {"description": "Unknown dataset, or no version with this id"},
        422: {"description": "The prefix is shorter than 4 characters or matches several versions"},
    },
)
def get_version(
    name: DatasetName,
    version: Annotated[str, Path(description="The version's id or a unique prefix of it (at least 4 characters)")],
    platform: PlatformDep,
    access: AccessDep,
) -> DatasetVersionDetail:
    require_dataset(platform.workspace, access, name, Level.VIEW, "viewing a dataset version")
    with platform.database.read() as session:
        return DatasetVersionDetail.of(catalog.version(session, name, version))


@router.delete(
    "/{name}/versions",
    response_model=DeletedVersions,
    summary="Forget every recorded version of the dataset",
    responses={**_UNKNOWN_DATASET, 409: {"description": "Queued or running runs use the dataset"}},
)
def delete_versions(name: DatasetName, platform: PlatformDep, access: AccessDep) -> DeletedVersions:
    """The next sync records them again from the source. Refused (409) while runs computed on the
    dataset are queued or running. Finished runs keep naming the versions they used. Needs
    `admin` on every model that reads the dataset (a site admin when none does)."""
    require_dataset(platform.workspace, access, name, Level.ADMIN, "deleting a dataset's versions")
    return DeletedVersions(deleted=platform.syncs.delete_versions(name))


@router.post(
    "/{name}/sync",
    response_model=SyncStarted,
    status_code=202,
    summary="Look for new versions now",
    responses={
        202: {"description": "A sync was queued; follow it at /datasets/{name}/syncs/{id}"},
        200: {"description": "A sync of the dataset was already queued or running (`joined`: true): that one"},
        **_UNKNOWN_DATASET,
        422: {"description": "Invalid body"},
    },
)
def request_sync(
    name: DatasetName,
    platform: PlatformDep,
    access: AccessDep,
    request: Annotated[SyncRequest | None, Body()] = None,
) -> Response:
    """Returns at once; the server syncs in the background. A sync records the versions it finds
    that are not yet known, stopping at the first known one unless `all` is true (git: the whole
    history of the branch). Its progress and outcome are visible on the sync. Needs `run` on a
    model that reads the dataset."""
    require_dataset(platform.workspace, access, name, Level.RUN, "syncing a dataset")
    request = request or SyncRequest()
    row, created = platform.request_sync(name, walk_all=request.all)
    body = SyncStarted(**SyncOut.of(row).model_dump(), joined=not created)
    return Response(body.model_dump_json(), status_code=202 if created else 200, media_type="application/json")


@router.get(
    "/{name}/syncs",
    response_model=list[SyncOut],
    summary="The dataset's syncs, newest first",
    responses=_UNKNOWN_DATASET,
)
def list_syncs(
    name: DatasetName, platform: PlatformDep, access: AccessDep, limit: Annotated[int, Query(ge=1, le=500)] = 20
) -> list[SyncOut]:
    require_dataset(platform.workspace, access, name, Level.VIEW, "listing a dataset's syncs")
    with platform.database.read() as session:
        return [SyncOut.of(row) for row in catalog.syncs(session, name, limit=limit)]


@router.get(
    "/{name}/syncs/{sync_id}",
    response_model=SyncOut,
    summary="One sync: its status, progress and outcome",
    responses={404: {"description": "Unknown dataset, or no such sync of it"}},
)
def get_sync(name: DatasetName, sync_id: RowId, platform: PlatformDep, access: AccessDep) -> SyncOut:
    require_dataset(platform.workspace, access, name, Level.VIEW, "viewing a sync")
    with platform.database.read() as session:
        return SyncOut.of(catalog.sync(session, name, sync_id))
