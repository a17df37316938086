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
    input_versions: dict[str, str] | None = None,
    upstream_outputs: dict[str, Any] | None = None,
) -> str:
    """sha256 (hex) of the canonical JSON of everything that determines a run's outputs."""
    document = {
        "model": model,
        "model_version": model_version,
        "step": step,
        "params": params,
        "inputs": input_versions or {},
        "upstream": upstream_outputs or {},
    }
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()
