"""A server's profile is part of every cache key and reaches the model, also on remote runners."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from modelrunner.engine.cache_key import cache_key
from modelrunner.engine.run_profile import RunProfile, variables_of
from modelrunner.execution.confinement import model_environment
from modelrunner.execution.job import AttemptJob
from modelrunner.execution.remote import RemoteJob, parse_job
from modelrunner.spec.automation_spec import ProfileSpec

pytestmark = pytest.mark.store_free

TEST = RunProfile("test", {"RT_CONFIG": "testconfig.R"})
PRODUCTION = RunProfile("production", {"RT_CONFIG": "config.R"})


def test_the_key_without_a_profile_is_the_key_runs_have_always_had() -> None:
    assert cache_key("noop", "v1", {"n": 1}) == "dc96cc778ab056b5782ca7c4be5c1512534b56acb9b850d5a9a296f3b0ef4848"
    assert RunProfile.of(None, ProfileSpec(env={"A": "1"})) is None


def test_the_profiles_name_and_its_variables_change_the_key() -> None:
    keys = {
        cache_key("noop", "v1", {"n": 1}),
        cache_key("noop", "v1", {"n": 1}, profile=TEST.as_json()),
        cache_key("noop", "v1", {"n": 1}, profile=PRODUCTION.as_json()),
        cache_key("noop", "v1", {"n": 1}, profile=RunProfile("test", {"RT_CONFIG": "config.R"}).as_json()),
        cache_key("noop", "v1", {"n": 1}, profile=RunProfile("test").as_json()),
    }
    assert len(keys) == 5
    reordered = RunProfile("p", {"B": "2", "A": "1"}).as_json()
    assert cache_key("m", "v", {}, profile=reordered) == cache_key(
        "m", "v", {}, profile=RunProfile("p", {"A": "1", "B": "2"}).as_json()
    )


def test_a_model_sees_its_runs_profile_over_the_runners_variables_and_under_the_contract() -> None:
    variables = variables_of({"profile": TEST.as_json()})
    runner = {"PATH": "/bin", "RT_CONFIG": "from-the-runner", "MODELRUNNER_PROFILE": "the-servers"}
    env = model_environment(runner, ["RT_CONFIG"], None, {"MODELRUNNER_RUN_ID": "3"}, variables)
    assert env == {
        "PATH": "/bin",
        "RT_CONFIG": "testconfig.R",
        "MODELRUNNER_PROFILE": "test",
        "MODELRUNNER_RUN_ID": "3",
    }
    assert variables_of(None) == {} and variables_of({"upstream": []}) == {}


def test_a_remote_runner_gets_the_profile_with_the_job() -> None:
    job = AttemptJob(
        run_id=1,
        attempt_id=2,
        attempt_number=1,
        model_name="m",
        model_version="v1",
        command=["python", "x.py"],
        params={},
        snapshot_uri="file:///snapshots/v1.tar.gz",
        profile_variables=variables_of({"profile": TEST.as_json()}),
    )
    described = RemoteJob(job, "file:///artifacts", 5.0).to_json()
    assert parse_job(described).job.profile_variables == {"RT_CONFIG": "testconfig.R", "MODELRUNNER_PROFILE": "test"}
    older = json.loads(described)
    del older["profile_variables"]  # from a server that predates profiles in jobs
    assert parse_job(json.dumps(older)).job.profile_variables == {}


def test_profile_variables_are_checked_when_the_workspace_is_read() -> None:
    assert ProfileSpec(env={"DRAWS": 100, "QUICK": True}).env == {"DRAWS": "100", "QUICK": "true"}
    with pytest.raises(ValidationError, match="MODELRUNNER_PROFILE: names starting with MODELRUNNER_"):
        ProfileSpec(env={"MODELRUNNER_PROFILE": "x"})
    with pytest.raises(ValidationError, match="'RT-CONFIG' is not an environment variable name"):
        ProfileSpec(env={"RT-CONFIG": "x"})
    with pytest.raises(ValidationError, match="CONFIG: give a string or a number, not list"):
        ProfileSpec(env={"CONFIG": ["a"]})
