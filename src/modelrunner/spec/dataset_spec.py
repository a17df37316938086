"""Datasets as declared under ``datasets:`` in ``modelrunner.yaml``: where the data lives and how
often ``serve`` looks for a new version of it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelrunner.spec.duration import parse_duration


class _DatasetBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    poll: float | None = Field(
        default=None, gt=0, description="Seconds (or '30m', '1d') after which serve checks for a new version"
    )

    @field_validator("poll", mode="before")
    @classmethod
    def _parse_poll(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class GitDataset(_DatasetBase):
    """A git repository; a version is a commit of ``branch`` that touched one of ``paths``."""

    source: Literal["git"]
    repo: str = Field(description="A URL git can clone, or a local path (relative to the workspace)")
    branch: str = "main"
    paths: list[str] = Field(default_factory=list, description="Files or folders that matter; all when empty")

    @field_validator("paths")
    @classmethod
    def _relative_paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.strip() or path.startswith("/") or ".." in Path(path).parts:
                raise ValueError(f"{path!r} must be a path relative to the repository root")
        return [path.strip("/") for path in value]


class FilesDataset(_DatasetBase):
    """Every file under an fsspec URL; a version is a hash over the sorted listing."""

    source: Literal["files"]
    url: str = Field(description="fsspec URL (file://, s3://...) or a local path (relative to the workspace)")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec storage options, e.g. {endpoint_url: ...} for an S3-compatible store; "
        "give credentials through the environment (AWS_ACCESS_KEY_ID...), not here",
    )


class HttpDataset(_DatasetBase):
    """One file behind an HTTP(S) URL; a version is identified by its content."""

    source: Literal["http"]
    url: str = Field(description="http:// or https:// URL of the file")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class ManagedDataset(_DatasetBase):
    """Files modelrunner stores itself: people put files into it (CLI, API, its page), and each
    change is a version recording who made it and why. ``write`` says which groups may change
    which paths: the first rule whose glob matches a path decides (``*`` crosses folders), a path
    no rule matches may not be written; without rules, whoever may run a model reading the
    dataset may write anywhere in it. Site admins may always write."""

    source: Literal["managed"]
    write: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Path glob -> the groups that may write there, e.g. {"base/**": [planners], "**": [analysts]}',
    )

    @field_validator("write")
    @classmethod
    def _relative_globs(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for glob in value:
            if not glob.strip() or glob.startswith("/") or ".." in Path(glob).parts:
                raise ValueError(f"{glob!r} must be a glob of paths relative to the dataset's root")
        return value


DatasetSpec = Annotated[GitDataset | FilesDataset | HttpDataset | ManagedDataset, Field(discriminator="source")]
