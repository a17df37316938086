"""What the run form adds for data: file parameters uploaded with the form, and a picker of the
folders (scenarios) of a dataset for a parameter that chooses one (spec/input_folders.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from modelrunner.artifacts.uploads import store_upload
from modelrunner.data.version_diff import folders
from modelrunner.platform import Platform
from modelrunner.spec.file_params import file_params
from modelrunner.spec.model_spec import ModelSpec
from modelrunner.store import data_queries
from modelrunner.web.forms import Choice, Field


async def uploaded_files(platform: Platform, schema: Mapping[str, Any], form: FormData) -> dict[str, str]:
    """Each file parameter's uploaded file, stored, as the reference its parameter takes; a file
    field left empty is left out (the schema's default applies). UploadTooLarge over the limit."""
    found = {}
    for name in file_params(dict(schema)):
        value = form.get(name)
        if isinstance(value, UploadFile) and value.filename:
            reference = await run_in_threadpool(
                store_upload,
                platform.artifacts,
                value.file,
                value.filename,
                max_bytes=platform.settings.max_upload_bytes,
                setting="max_upload_bytes",
            )
            found[name] = reference.value
    return found


def scenario_pickers(session: Session, spec: ModelSpec, fields: list[Field]) -> list[Field]:
    """``fields`` with each parameter that chooses an input's folder as a choice among the folders
    of its dataset's newest version."""
    choosing = {path.removeprefix("params."): spec.inputs[name] for name, path in spec.input_folders.items()}
    if not choosing:
        return fields
    shown = []
    for field in fields:
        dataset = choosing.get(field.name)
        newest = data_queries.newest_version(session, dataset) if dataset is not None else None
        if newest is None:
            shown.append(field)
            continue
        there = folders(newest)
        current = field.value or (there[0] if there else "")
        choices = tuple(Choice(folder, folder, folder == current) for folder in there)
        help_text = f"A folder of dataset {dataset} (newest version {newest.version[:12]})"
        shown.append(replace(field, widget="select", choices=choices, help=field.help or help_text))
    return shown
