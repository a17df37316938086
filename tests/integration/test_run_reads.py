"""The read-model for runs: one read transaction per read (the permission check in it), and lists
that read only the columns they show."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from modelrunner.api.deps import access_of
from modelrunner.auth.principal import Principal
from modelrunner.auth.run_access import RunPermission
from modelrunner.engine import run_reads
from modelrunner.errors import NotFound
from modelrunner.platform import Platform
from modelrunner.spec.access_spec import Level
from modelrunner.store.run_reads_queries import RunFilter
from tests.conftest import wait_for_run
from tests.integration.runs_api import submit

SITE_ADMIN = Principal(1, "admin", is_admin=True)


@pytest.fixture
def finished_run(client: TestClient) -> int:
    run_id: int = submit(client, "noop", {"n": 1})["id"]
    wait_for_run(client.get, run_id)
    return run_id


@contextmanager
def counted_reads(platform: Platform) -> Iterator[list[int]]:
    """Counts the read transactions opened in this thread while the block runs."""
    opened: list[int] = []
    original: Callable[[], AbstractContextManager[Session]] = platform.database.read
    me = threading.get_ident()

    @contextmanager
    def read() -> Iterator[Session]:
        if threading.get_ident() == me:
            opened.append(1)
        with original() as session:
            yield session

    platform.database.read = read  # type: ignore[method-assign]
    try:
        yield opened
    finally:
        platform.database.read = original  # type: ignore[method-assign]


@contextmanager
def statements_on_runs(platform: Platform) -> Iterator[list[str]]:
    """The SQL this thread sends that reads the runs table while the block runs."""
    seen: list[str] = []
    me = threading.get_ident()

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.get_ident() == me and "FROM runs" in statement:
            seen.append(statement)

    engine = platform.database.read_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_each_read_of_a_run_checks_and_reads_in_one_transaction(platform: Platform, finished_run: int) -> None:
    viewer = RunPermission(finished_run, access_of(platform, SITE_ADMIN), Level.VIEW)
    output = run_reads.run_outputs(platform, viewer, "listing")[1][0].path
    reads: list[Callable[[], object]] = [
        lambda: run_reads.run_detail(platform, viewer, with_steps=True),
        lambda: run_reads.run_log(platform, viewer, 0, 1024),
        lambda: run_reads.run_events(platform, viewer, 0, 10),
        lambda: run_reads.run_outputs(platform, viewer, "listing a run's outputs"),
        lambda: run_reads.run_output(platform, viewer, output),
        lambda: run_reads.run_progress(platform, viewer, 0, 1024),
        lambda: run_reads.pipeline_progress(platform, viewer),
    ]
    for read in reads:
        with counted_reads(platform) as opened:
            read()
        assert len(opened) == 1, read


def test_a_missing_output_is_named(platform: Platform, finished_run: int) -> None:
    viewer = RunPermission(finished_run, access_of(platform, SITE_ADMIN), Level.VIEW)
    with pytest.raises(NotFound, match=re.escape("has no output 'nothing.csv'")):
        run_reads.run_output(platform, viewer, "nothing.csv")


def test_lists_read_only_the_columns_they_show(platform: Platform, client: TestClient, finished_run: int) -> None:
    access = access_of(platform, SITE_ADMIN)
    with statements_on_runs(platform) as page_lists:
        latest = run_reads.latest_runs(platform, access, ["noop", "forker"])
        recent = run_reads.recent_runs(platform, access, "noop", 10, "viewing a model")
    assert list(latest) == ["noop"] and latest["noop"].id == finished_run
    assert [run.id for run in recent] == [finished_run]
    assert len(page_lists) == 2  # the newest run of every model in one statement
    assert all("runs.inputs" not in statement for statement in page_lists)
    # The models page names each model's last run; a list of runs tells them apart by their parameters.
    assert "runs.params" not in page_lists[0] and "runs.params" in page_lists[1]

    with statements_on_runs(platform) as api_list:
        listing = run_reads.list_runs(platform, access, RunFilter(), 10)
    assert [run.id for run in listing.runs] == [finished_run]
    assert api_list and all("runs.plan" not in statement for statement in api_list)
