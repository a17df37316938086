"""/api/v1/datasets/{name}/files and /diff: changing a managed dataset, each change a new version,
and what changed between two versions of any dataset."""

from __future__ import annotations

import tempfile
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from modelrunner.api.deps import AccessDep, PlatformDep
from modelrunner.api.schemas import DatasetVersionOut
from modelrunner.auth.access import Access
from modelrunner.auth.dataset_access import require_dataset
from modelrunner.data import catalog
from modelrunner.data.managed_writes import Change, Put, TooLarge
from modelrunner.data.version_diff import diff
from modelrunner.errors import InvalidInput, Problem
from modelrunner.platform import Platform
from modelrunner.spec.access_spec import Level

router = APIRouter(prefix="/datasets", tags=["datasets"])

DatasetName = Annotated[str, Path(description="The dataset's name in modelrunner.yaml")]
FilePath = Annotated[str, Path(description="The file's path in the dataset, e.g. base/links.geojson")]
Message = Annotated[str, Query(max_length=2000, description="Why the change was made (kept with the version)")]
Base = Annotated[
    str | None,
    Query(description="The version the change was made on: refused (409) if the dataset's newest is another"),
]

_MAX_FILES = 1000
_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Nothing changed (every file was as given): no new version"},
    403: {"description": "The caller may not write the dataset, or a path its write rules keep from them"},
    404: {"description": "Unknown dataset"},
    409: {"description": "The dataset changed since `base`, or another change of it is under way"},
    413: {"description": "A file is larger than max_upload_bytes"},
    422: {"description": "Not a managed dataset, an unsafe path, or a file to remove that is not there"},
}


class ChangeOut(BaseModel):
    version: DatasetVersionOut | None = Field(description="The new version; null when nothing changed")
    parent: str | None = Field(description="The version the change was made on; null for the first")

    @classmethod
    def of(cls, change: Change) -> ChangeOut:
        return cls(version=DatasetVersionOut.of(change.version) if change.version else None, parent=change.parent)


class DiffOut(BaseModel):
    from_version: str = Field(alias="from")
    to_version: str = Field(alias="to")
    added: list[str]
    removed: list[str]
    changed: list[str]


@router.put(
    "/{name}/files/{path:path}",
    response_model=ChangeOut,
    status_code=201,
    summary="Put one file into a managed dataset (a new version)",
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}},
    responses=_WRITE_RESPONSES,
)
async def put_dataset_file(
    name: DatasetName,
    path: FilePath,
    request: Request,
    platform: PlatformDep,
    access: AccessDep,
    message: Message = "",
    base: Base = None,
) -> Any:
    """The body is the file's content, streamed to disk. Needs `run` on a model that reads the
    dataset, and a write rule of the dataset that lets one of the caller's groups write the path."""
    await run_in_threadpool(_require_writer, platform, access, name)
    with tempfile.TemporaryFile(prefix="modelrunner-dataset-") as spool:
        async for chunk in request.stream():
            await run_in_threadpool(spool.write, chunk)
        spool.seek(0)
        change = await run_in_threadpool(_change, platform, access, name, [Put(path, spool)], [], message, base)
    return _answer(change)


@router.post(
    "/{name}/files",
    response_model=ChangeOut,
    status_code=201,
    summary="Put and remove files of a managed dataset in one change (a new version)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "description": "Files; each one's file name is its path below `folder`",
                            },
                            "folder": {"type": "string", "description": "Where the files go (default: the root)"},
                            "remove": {"type": "array", "items": {"type": "string"}, "description": "Paths to remove"},
                            "message": {"type": "string"},
                            "base": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
    responses=_WRITE_RESPONSES,
)
async def change_dataset(name: DatasetName, request: Request, platform: PlatformDep, access: AccessDep) -> Any:
    """All files of one request make one version, or none when any is refused."""
    await run_in_threadpool(_require_writer, platform, access, name)
    async with request.form(max_files=_MAX_FILES, max_fields=_MAX_FILES) as form:
        folder = str(form.get("folder") or "").strip().strip("/")
        message = str(form.get("message") or "")
        base = str(form.get("base") or "") or None
        removed = [str(v) for v in form.getlist("remove") if isinstance(v, str) and v]
        puts = []
        for field, value in form.multi_items():
            if isinstance(value, UploadFile):
                if field != "file":
                    raise InvalidInput.of([Problem(field, "files go in `file` fields")])
                relative = value.filename or ""
                puts.append(Put(f"{folder}/{relative}" if folder else relative, value.file))
        change = await run_in_threadpool(_change, platform, access, name, puts, removed, message, base)
    return _answer(change)


@router.delete(
    "/{name}/files/{path:path}",
    response_model=ChangeOut,
    status_code=201,
    summary="Remove one file of a managed dataset (a new version)",
    responses=_WRITE_RESPONSES,
)
def remove_dataset_file(
    name: DatasetName,
    path: FilePath,
    platform: PlatformDep,
    access: AccessDep,
    message: Message = "",
    base: Base = None,
) -> Any:
    _require_writer(platform, access, name)
    return _answer(_change(platform, access, name, [], [path], message, base))


@router.get(
    "/{name}/diff",
    response_model=DiffOut,
    summary="What changed between two versions: files added, removed and changed",
    responses={404: {"description": "Unknown dataset or version"}, 422: {"description": "Ambiguous version prefix"}},
)
def version_diff(
    name: DatasetName,
    platform: PlatformDep,
    access: AccessDep,
    old: Annotated[str, Query(alias="from", description="The older version (or a unique prefix)")],
    new: Annotated[str, Query(alias="to", description="The newer version (or a unique prefix)")],
) -> Any:
    require_dataset(platform.workspace, access, name, Level.VIEW, "comparing a dataset's versions")
    with platform.database.read() as session:
        found = diff(catalog.version(session, name, old), catalog.version(session, name, new))
    return found.as_json()


def _require_writer(platform: Platform, access: Access, name: str) -> None:
    require_dataset(platform.workspace, access, name, Level.RUN, "writing a dataset")
    platform.managed.spec(name)


def _change(
    platform: Platform,
    access: Access,
    name: str,
    puts: list[Put],
    removed: list[str],
    message: str,
    base: str | None,
) -> Change:
    try:
        return platform.managed.change(name, access.principal, put=puts, remove=removed, message=message, base=base)
    except TooLarge as exc:
        raise HTTPException(413, exc.message) from exc


def _answer(change: Change) -> Any:
    body = ChangeOut.of(change).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if change.version is not None else 200)
