"""The cache key: what determines a run's result, hashed. The backend is deliberately not in it."""

from __future__ import annotations

import hashlib
from typing import Any

from modelrunner.spec.params import canonical_json


def cache_key(
    model: str,
    model_version: str,
    params: dict[str, Any],
    *,
    step: str | None = None,
    item: Any = None,
    input_versions: dict[str, str] | None = None,
    upstream_outputs: dict[str, Any] | None = None,
    skipped_steps: list[str] | None = None,
    profile: dict[str, Any] | None = None,
) -> str:
    """sha256 (hex) of the canonical JSON of everything that determines a run's outputs.

    ``item`` is a fan-out item of ``step``; ``skipped_steps`` are the steps a pipeline run
    leaves out (a profile that does not publish), so such a run never answers for a full one;
    ``profile`` is the server's profile (RunProfile.as_json: its name and the variables it gives
    models), so runs under two profiles never answer for each other.
    """
    document: dict[str, Any] = {
        "model": model,
        "model_version": model_version,
        "step": step,
        "params": params,
        "inputs": input_versions or {},
        "upstream": upstream_outputs or {},
    }
    # Added only when used, so the keys of runs recorded before pipelines existed stay valid.
    if item is not None:
        document["item"] = item
    if skipped_steps:
        document["skipped_steps"] = sorted(skipped_steps)
    if profile is not None:
        document["profile"] = profile
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()
