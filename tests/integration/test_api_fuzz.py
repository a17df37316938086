"""The HTTP API against its own OpenAPI document: schemathesis sends a few generated requests to
every operation of a real server (signed in as a site admin) and checks that none answers 5xx and
that every answer matches the document (status, content type, headers, body schema).

Bounded to stay well under two minutes on a small machine: a few examples per operation, no
shrinking, no deadline (a loaded CI machine is slow, not wrong)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)
from sqlalchemy import create_engine, text

from modelrunner.settings import Settings
from modelrunner.store.database import normalise_url
from tests.conftest import POSTGRES_URL, TESTS
from tests.integration.served import Served

pytestmark = pytest.mark.xdist_group("api_fuzz")  # one server for every operation


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("fuzz")
    workspace = root / "workspace"
    # Not the model that writes its pid to a path it is given: generated paths must not become
    # files anywhere on the machine running the tests.
    shutil.copytree(TESTS / "workspace", workspace, ignore=shutil.ignore_patterns("__pycache__", "broken", "forker"))
    database_url = f"sqlite:///{root / 'state' / 'modelrunner.db'}"
    name = f"mr_fuzz_{uuid.uuid4().hex[:12]}"
    if POSTGRES_URL:
        admin = create_engine(normalise_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        database_url = f"{normalise_url(POSTGRES_URL).rpartition('/')[0]}/{name}"
    served = Served(
        Settings(
            workspace=workspace,
            data_dir=root / "state",
            database_url=database_url,
            local_slots=2,
            lease_seconds=3,
            grace_seconds=1,
            poll_seconds=0.2,
        )
    )
    try:
        yield served
    finally:
        served.stop()
        if POSTGRES_URL:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: Served) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")
    # Waits up to 20 s for work per example; its answers (204 or a claimed attempt) are covered by
    # the worker-pool tests.
    return schema.exclude(path="/api/v1/pools/{pool}/claim")


_CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, response_headers_conformance]


def test_the_api_answers_as_documented(api_schema: schemathesis.BaseSchema, fuzzed_server: Served) -> None:
    """Every operation in turn; the first operation that fails fails the test, with its request."""
    admin = {"Authorization": fuzzed_server.http.headers["Authorization"]}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 40  # the document lists the API, not a part of it

    for operation in operations:
        headers = {} if _takes_callback_token(operation) else admin

        @given(case=operation.as_strategy())
        @settings(
            max_examples=10,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def answers_as_documented(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=fuzzed_server.url, headers=headers, checks=_CHECKS)  # noqa: B023 - run at once

        answers_as_documented()


def _takes_callback_token(operation: schemathesis.APIOperation) -> bool:
    """An attempt's report takes the attempt's callback token, not a user's: it keeps the token
    schemathesis made up (a made-up token must be refused with 401/403, never 500)."""
    return any("AttemptCallbackToken" in requirement for requirement in operation.definition.raw.get("security", []))
