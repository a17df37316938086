"""The tables of allowed run and attempt transitions: no way out of a final state, no dead end before one."""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from modelrunner.engine.states import (
    ACTIVE_ATTEMPT_STATES,
    ACTIVE_RUN_STATES,
    ALLOWED_ATTEMPT_TRANSITIONS,
    ALLOWED_TRANSITIONS,
    FINAL_ATTEMPT_STATES,
    FINAL_RUN_STATES,
    INITIAL_RUN_STATES,
    AttemptStatus,
    RunStatus,
    attempt_sources_of,
    sources_of,
)


def reachable_from(start: RunStatus) -> set[RunStatus]:
    seen = {start}
    todo = deque([start])
    while todo:
        for following in ALLOWED_TRANSITIONS[todo.popleft()]:
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen


def test_every_state_has_a_row() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(RunStatus)


def test_final_states() -> None:
    assert {s.value for s in FINAL_RUN_STATES} == {"succeeded", "failed", "timed_out", "cancelled"}
    assert frozenset(RunStatus) - FINAL_RUN_STATES == ACTIVE_RUN_STATES


@pytest.mark.parametrize("state", sorted(FINAL_RUN_STATES))
def test_final_states_have_no_exits(state: RunStatus) -> None:
    assert ALLOWED_TRANSITIONS[state] == frozenset()


@pytest.mark.parametrize("state", sorted(ACTIVE_RUN_STATES))
def test_every_unfinished_state_can_reach_a_final_one(state: RunStatus) -> None:
    assert reachable_from(state) & FINAL_RUN_STATES


@pytest.mark.parametrize("state", sorted(ACTIVE_RUN_STATES))
def test_every_unfinished_state_can_be_cancelled(state: RunStatus) -> None:
    assert RunStatus.CANCELLED in ALLOWED_TRANSITIONS[state]


def test_every_state_is_reachable_from_queued() -> None:
    assert reachable_from(RunStatus.QUEUED) == set(RunStatus)


def test_no_state_moves_to_itself() -> None:
    assert all(state not in targets for state, targets in ALLOWED_TRANSITIONS.items())


def test_the_happy_path() -> None:
    path = [RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING, RunStatus.SUCCEEDED]

    assert all(b in ALLOWED_TRANSITIONS[a] for a, b in itertools.pairwise(path))


@pytest.mark.parametrize("state", [RunStatus.PREEMPTED, RunStatus.LOST])
def test_preempted_and_lost_go_back_to_the_queue_or_fail(state: RunStatus) -> None:
    assert ALLOWED_TRANSITIONS[state] == {RunStatus.QUEUED, RunStatus.FAILED, RunStatus.CANCELLED}


def test_only_a_running_run_can_succeed_or_time_out() -> None:
    assert sources_of(RunStatus.SUCCEEDED) == {RunStatus.RUNNING}
    assert sources_of(RunStatus.TIMED_OUT) == {RunStatus.RUNNING}


def test_a_queued_run_cannot_skip_starting() -> None:
    assert sources_of(RunStatus.STARTING) == {RunStatus.QUEUED}
    assert RunStatus.RUNNING not in ALLOWED_TRANSITIONS[RunStatus.QUEUED]


@pytest.mark.parametrize("target", list(RunStatus))
def test_sources_of_agrees_with_the_table(target: RunStatus) -> None:
    assert sources_of(target) == {s for s, targets in ALLOWED_TRANSITIONS.items() if target in targets}


def test_a_run_is_born_queued_running_or_succeeded() -> None:
    assert {s.value for s in INITIAL_RUN_STATES} == {"queued", "running", "succeeded"}


def test_every_attempt_state_has_a_row() -> None:
    assert set(ALLOWED_ATTEMPT_TRANSITIONS) == set(AttemptStatus)
    assert set(AttemptStatus) == ACTIVE_ATTEMPT_STATES | FINAL_ATTEMPT_STATES


@pytest.mark.parametrize("state", sorted(FINAL_ATTEMPT_STATES))
def test_an_ended_attempt_never_moves_again(state: AttemptStatus) -> None:
    assert ALLOWED_ATTEMPT_TRANSITIONS[state] == frozenset()


@pytest.mark.parametrize("state", sorted(ACTIVE_ATTEMPT_STATES))
def test_an_active_attempt_can_end_in_every_way(state: AttemptStatus) -> None:
    assert ALLOWED_ATTEMPT_TRANSITIONS[state] >= FINAL_ATTEMPT_STATES


def test_an_attempt_runs_only_after_starting_and_never_starts_again() -> None:
    assert attempt_sources_of(AttemptStatus.RUNNING) == (AttemptStatus.STARTING,)
    assert attempt_sources_of(AttemptStatus.STARTING) == ()


@pytest.mark.parametrize("target", list(AttemptStatus))
def test_attempt_sources_of_agrees_with_the_table_running_first(target: AttemptStatus) -> None:
    sources = attempt_sources_of(target)
    assert set(sources) == {s for s, targets in ALLOWED_ATTEMPT_TRANSITIONS.items() if target in targets}
    assert AttemptStatus.RUNNING not in sources[1:]
