"""The profile a run is computed under: its name and the variables it gives the model.

Both are part of the run's cache key (a test server and a production server on one store never
answer for each other) and travel with the run, in its ``plan``, to whichever runner executes it,
so the model sees the profile its result was keyed under even when another server claims it.
Without a profile (``serve`` with no ``--profile``) a run carries nothing and its key is what it
was before profiles were part of keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelrunner.spec.automation_spec import ProfileSpec

PROFILE_VARIABLE = "MODELRUNNER_PROFILE"


@dataclass(frozen=True)
class RunProfile:
    name: str
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str | None, spec: ProfileSpec) -> RunProfile | None:
        """The profile runs get from a server started with profile ``name`` (None: no profile)."""
        return cls(name, dict(spec.env)) if name is not None else None

    def as_json(self) -> dict[str, Any]:
        """What the cache key holds, and what a run keeps in its plan."""
        return {"name": self.name, "env": dict(sorted(self.env.items()))}

    @classmethod
    def of_json(cls, data: Mapping[str, Any] | None) -> RunProfile | None:
        if not data:
            return None
        return cls(str(data["name"]), {str(k): str(v) for k, v in dict(data.get("env") or {}).items()})


def variables_of(plan: Mapping[str, Any] | None) -> dict[str, str]:
    """The variables a model sees for a run with this plan: MODELRUNNER_PROFILE and the profile's
    own; none for a run computed without a profile."""
    profile = RunProfile.of_json((plan or {}).get("profile"))
    if profile is None:
        return {}
    return {**profile.env, PROFILE_VARIABLE: profile.name}
