"""Who may write which paths of a managed dataset (``write:`` of its spec). One rule for the API,
the command line and the pages."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from modelrunner.auth.principal import Principal
from modelrunner.errors import Forbidden
from modelrunner.spec.dataset_spec import ManagedDataset


def require_writable(dataset: str, spec: ManagedDataset, principal: Principal, paths: Iterable[str]) -> None:
    """Forbidden naming the path and the rule that keeps ``principal`` from writing it; the first
    rule whose glob matches a path decides. Site admins, and everyone when there are no rules,
    pass (the dataset's own permission is checked before)."""
    if principal.is_admin or not spec.write:
        return
    for path in paths:
        rule = next((glob for glob in spec.write if fnmatchcase(path, glob)), None)
        if rule is None:
            raise Forbidden(
                f"dataset '{dataset}': no write rule covers {path!r} (rules: {', '.join(spec.write)})",
                dataset=dataset,
                path=path,
            )
        allowed = spec.write[rule]
        if not principal.groups & set(allowed):
            raise Forbidden(
                f"dataset '{dataset}': writing {path!r} is for the groups {', '.join(allowed) or 'none'} "
                f"(write rule {rule!r}); {principal.name} is in none of them",
                dataset=dataset,
                path=path,
                rule=rule,
            )
