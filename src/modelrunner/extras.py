"""The optional extras of modelrunner (pyproject.toml) and the one place where a library missing
because its extra is not installed becomes a message that names the extra."""

from __future__ import annotations

import importlib.util

from modelrunner.errors import ModelrunnerError

# By the top-level module of an extra's library: the library as pip names it, what needs it, and
# the extra that brings it.
_NEEDED_BY: dict[str, tuple[str, str, str]] = {
    "psycopg": ("psycopg", "a PostgreSQL store", "postgres"),
    "s3fs": ("s3fs", "an s3:// artifact store or dataset source", "s3"),
    "boto3": ("boto3", "the aws-ecs and aws-batch backends", "aws"),
    "botocore": ("boto3", "the aws-ecs and aws-batch backends", "aws"),
    "azure": ("azure-batch and azure-identity", "the azure-batch backend", "azure"),
    "kubernetes": ("the kubernetes client", "the kubernetes backend", "kubernetes"),
    "distributed": ("dask.distributed", "a backend of type dask", "dask"),
    "papermill": ("papermill", "a notebook model", "notebook"),
    "nbformat": ("papermill", "a notebook model", "notebook"),
    "nbclient": ("papermill", "a notebook model", "notebook"),
    "nbconvert": ("nbconvert", "a notebook model", "notebook"),
    "ipykernel": ("ipykernel", "a notebook model", "notebook"),
    "jupyter_client": ("ipykernel", "a notebook model", "notebook"),
}


class MissingExtra(ModelrunnerError):
    """A library of an optional extra is not installed; the message says which extra to install."""


def missing_module(module: str) -> MissingExtra | None:
    """The error to show when ``module``, a library of an extra (a key of the table above), is
    not installed; None when it is. Finds the module without importing it."""
    if importlib.util.find_spec(module) is not None:
        return None
    return missing_extra(ModuleNotFoundError(name=module))


def missing_extra(exc: BaseException) -> MissingExtra | None:
    """The error to show when ``exc``, or an exception that led to it (libraries such as fsspec
    raise their own ImportError from the original), is the import of an extra's library that is
    not installed; None for any other exception."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ModuleNotFoundError) and seen.name:
            module = seen.name.partition(".")[0]
            if module in _NEEDED_BY:
                library, needed_by, extra = _NEEDED_BY[module]
                return MissingExtra(
                    f"{needed_by} needs {library}, which is not installed: pip install 'modelrunner[{extra}]'"
                )
        seen = seen.__cause__ or seen.__context__
    return None
