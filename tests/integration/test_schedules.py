"""Schedules: cron ticks read in a time zone (across daylight-saving changes), catch-up after
downtime, overlap policies, one run per `each` item, switches, failures, and "run now" over HTTP.

Clock-driven tests build a Scheduler with a clock of their own on a migrated database and call
``tick()`` as the automation loop would; nothing else runs, so queued runs stay queued until the
test cancels them (a run that has ended)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from modelrunner.engine.scheduler import Scheduler
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from modelrunner.store import migrate
from modelrunner.store.tables import FiringRow, RunRow
from tests.conftest import wait_for_run

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


class Clock:
    """A clock the test moves."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def set_schedules(workspace: Path, schedules: list[dict[str, Any]], model: str = "noop", **extra: Any) -> None:
    """Give ``model`` these schedules (and other top-level fields) in its model.yaml."""
    path = workspace / model / "model.yaml"
    spec = yaml.safe_load(path.read_text())
    spec.update(schedules=schedules, **extra)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


@pytest.fixture
def store(platform: Platform) -> Iterator[Platform]:
    """The platform's database migrated, nothing started: runs stay as the scheduler left them."""
    migrate.upgrade(platform.database)
    yield platform
    platform.database.dispose()


def scheduler_at(platform: Platform, clock: Clock, **options: Any) -> Scheduler:
    return Scheduler(platform.database, platform.workspace, platform.submitter, clock=clock, **options)


def firings(scheduler: Scheduler, name: str) -> list[FiringRow]:
    """Oldest first."""
    return list(reversed(scheduler.firings(name, 500)))


def runs(platform: Platform, ids: list[int] | None = None) -> list[RunRow]:
    with platform.database.read() as session:
        statement = select(RunRow).order_by(RunRow.id)
        if ids is not None:
            statement = statement.where(RunRow.id.in_(ids))
        return list(session.scalars(statement))


def overview(scheduler: Scheduler, name: str) -> Any:
    return next(s for s in scheduler.overview() if s.name == name)


def end_runs(platform: Platform) -> None:
    """Every unfinished run ends (cancelled), as if it had finished."""
    for run in runs(platform):
        platform.cancel(run.id)


# --- cron in a time zone ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "start", "expected"),
    [
        pytest.param(
            "30 2 * * *",
            "2024-03-09T12:00",
            # 02:30 does not exist on 10 March in New York (02:00 -> 03:00): it fires once, at 03:00 EDT.
            ["2024-03-10T07:00:00+00:00", "2024-03-11T06:30:00+00:00"],
            id="spring-forward",
        ),
        pytest.param(
            "30 1 * * *",
            "2024-11-02T12:00",
            # 01:30 happens twice on 3 November (01:30 EDT, then 01:30 EST): it fires at the first only.
            ["2024-11-03T05:30:00+00:00", "2024-11-04T06:30:00+00:00"],
            id="fall-back",
        ),
    ],
)
def test_a_daily_schedule_in_new_york_fires_once_a_day_across_a_dst_change(
    store: Platform, workspace: Path, cron: str, start: str, expected: list[str]
) -> None:
    set_schedules(workspace, [{"name": "daily", "cron": cron, "timezone": "America/New_York"}])
    clock = Clock(at(start))
    scheduler = scheduler_at(store, clock)

    scheduler.tick()
    assert overview(scheduler, "noop/daily").next_fire_at == dt.datetime.fromisoformat(expected[0])
    while clock.now < at(start) + dt.timedelta(days=2):
        clock.now += dt.timedelta(minutes=5)
        scheduler.tick()
        end_runs(store)  # each day's run is over before the next day's tick

    fired = firings(scheduler, "noop/daily")
    assert [f.cause for f in fired] == [f"tick:{moment}" for moment in expected]
    assert [f.status for f in fired] == ["submitted", "submitted"]
    assert len(runs(store)) == 2
    assert all(run.origin == "schedule:noop/daily#0" for run in runs(store))


def test_a_new_schedule_starts_at_its_next_tick_and_after_downtime_fires_once(store: Platform, workspace: Path) -> None:
    set_schedules(workspace, [{"name": "hourly", "cron": "0 * * * *"}])
    clock = Clock(at("2024-05-01T10:10"))
    scheduler = scheduler_at(store, clock)

    scheduler.tick()  # first seen: nothing back-filled for 10:00 or earlier
    assert firings(scheduler, "noop/hourly") == []
    assert overview(scheduler, "noop/hourly").next_fire_at == at("2024-05-01T11:00")

    clock.now = at("2024-05-01T15:20")  # the server was down from 10:10 to 15:20: ticks 11:00 to 15:00 missed
    assert scheduler.tick() == 1
    scheduler.tick()
    restarted = scheduler_at(store, clock)  # another server, or this one restarted
    restarted.tick()

    fired = firings(scheduler, "noop/hourly")
    assert [(f.cause, f.status) for f in fired] == [("tick:2024-05-01T15:00:00+00:00", "submitted")]
    assert [run.id for run in runs(store)] == fired[0].run_ids
    state = overview(restarted, "noop/hourly")
    assert (state.next_fire_at, state.last_fired_at) == (at("2024-05-01T16:00"), at("2024-05-01T15:00"))


def test_two_servers_ticking_at_once_fire_a_tick_once(store: Platform, settings: Settings, workspace: Path) -> None:
    set_schedules(workspace, [{"name": "hourly", "cron": "0 * * * *"}])
    clock = Clock(at("2024-05-01T10:10"))
    scheduler_at(store, clock).tick()
    clock.now = at("2024-05-01T11:00")
    others = [Platform(settings) for _ in range(3)]  # each with its own connections, as separate servers
    schedulers = [scheduler_at(other, clock) for other in others]
    barrier = threading.Barrier(len(schedulers))
    created: list[int] = []

    def tick(scheduler: Scheduler) -> None:
        barrier.wait()
        created.append(scheduler.tick())

    threads = [threading.Thread(target=tick, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for other in others:
        other.database.dispose()

    assert sorted(created) == [0, 0, 1]
    assert [f.cause for f in firings(schedulers[0], "noop/hourly")] == ["tick:2024-05-01T11:00:00+00:00"]
    assert len(runs(store)) == 1


# --- overlap --------------------------------------------------------------------------------------


def test_overlap_skip_creates_nothing_while_the_previous_runs_go(store: Platform, workspace: Path) -> None:
    set_schedules(workspace, [{"name": "often", "cron": "*/10 * * * *", "overlap": "skip"}])
    clock = Clock(at("2024-05-01T10:05"))
    scheduler = scheduler_at(store, clock)
    scheduler.tick()

    clock.now = at("2024-05-01T10:10")
    scheduler.tick()
    [first] = runs(store)
    clock.now = at("2024-05-01T10:20")
    scheduler.tick()  # the 10:10 run is still queued
    end_runs(store)
    clock.now = at("2024-05-01T10:30")
    scheduler.tick()

    fired = firings(scheduler, "noop/often")
    assert [(f.cause[16:], f.status) for f in fired] == [
        ("10:10:00+00:00", "submitted"),
        ("10:20:00+00:00", "skipped"),
        ("10:30:00+00:00", "submitted"),
    ]
    assert f"run {first.id}" in fired[1].detail and "still going" in fired[1].detail
    assert fired[1].run_ids == []
    assert len(runs(store)) == 2


def test_overlap_queue_waits_and_submits_once_the_previous_runs_end(store: Platform, workspace: Path) -> None:
    set_schedules(workspace, [{"name": "often", "cron": "*/10 * * * *", "overlap": "queue"}])
    clock = Clock(at("2024-05-01T10:05"))
    scheduler = scheduler_at(store, clock)
    scheduler.tick()
    clock.now = at("2024-05-01T10:10")
    scheduler.tick()
    [first] = runs(store)

    clock.now = at("2024-05-01T10:20")
    scheduler.tick()
    clock.now = at("2024-05-01T10:25")
    scheduler.tick()
    clock.now = at("2024-05-01T10:30")
    scheduler.tick()  # one firing waits already: this tick is skipped, not queued behind it
    assert len(runs(store)) == 1
    waiting = firings(scheduler, "noop/often")[1]
    assert (waiting.status, waiting.run_ids) == ("waiting", [])
    assert f"run {first.id}" in waiting.detail

    end_runs(store)
    clock.now = at("2024-05-01T10:31")
    assert scheduler.tick() == 1
    scheduler_at(store, clock).tick()  # a second server finds nothing left to submit

    fired = firings(scheduler, "noop/often")
    assert [(f.cause[16:], f.status) for f in fired] == [
        ("10:10:00+00:00", "submitted"),
        ("10:20:00+00:00", "submitted"),
        ("10:30:00+00:00", "skipped"),
    ]
    [_, second] = runs(store)
    assert fired[1].run_ids == [second.id]
    assert second.status == "queued"


# --- what a firing submits ------------------------------------------------------------------------


def test_each_submits_one_run_per_item_with_distinct_origins(store: Platform, workspace: Path) -> None:
    each = [{"label": "north"}, {"label": "south", "n": 2}, {"n": 3}]
    set_schedules(workspace, [{"name": "regions", "cron": "0 6 * * *", "each": each}])
    clock = Clock(at("2024-05-01T05:00"))
    scheduler = scheduler_at(store, clock)
    scheduler.tick()
    clock.now = at("2024-05-01T06:00")

    assert scheduler.tick() == 3

    [firing] = firings(scheduler, "noop/regions")
    created = runs(store)
    assert firing.status == "submitted" and firing.run_ids == [run.id for run in created]
    assert [run.params for run in created] == [
        {"label": "north", "n": 0},
        {"label": "south", "n": 2},
        {"label": "", "n": 3},
    ]
    assert [run.origin for run in created] == [f"schedule:noop/regions#{index}" for index in range(3)]
    assert overview(scheduler, "noop/regions").runs_per_firing == 3


def test_a_firing_that_cannot_submit_is_recorded_failed_and_the_schedule_moves_on(
    store: Platform, workspace: Path
) -> None:
    set_schedules(workspace, [{"name": "broken", "cron": "0 * * * *", "params": {"n": "many"}}])
    (workspace / "modelrunner.yaml").write_text(
        yaml.safe_dump(
            {"schedules": [{"name": "fanout", "model": "noop", "cron": "0 * * * *", "each": [{"n": 1}, {"n": "two"}]}]}
        )
    )
    clock = Clock(at("2024-05-01T10:30"))
    scheduler = scheduler_at(store, clock)
    scheduler.tick()
    for moment in ("11:00", "11:30", "12:00"):
        clock.now = at(f"2024-05-01T{moment}")
        scheduler.tick()

    for name in ("noop/broken", "noop/fanout"):
        fired = firings(scheduler, name)
        assert [(f.cause[16:], f.status, f.run_ids) for f in fired] == [
            ("11:00:00+00:00", "failed", []),
            ("12:00:00+00:00", "failed", []),
        ]
        assert overview(scheduler, name).next_fire_at == at("2024-05-01T13:00")
    assert "params.n" in firings(scheduler, "noop/broken")[0].detail
    # One bad item stops the whole firing; the detail says which.
    assert firings(scheduler, "noop/fanout")[0].detail.startswith("item 1 of each:")
    assert runs(store) == []


def test_switched_off_schedules_fire_nothing_and_owe_nothing_when_switched_on(store: Platform, workspace: Path) -> None:
    set_schedules(workspace, [{"name": "hourly", "cron": "0 * * * *", "enabled": False}])
    set_schedules(workspace, [{"name": "hourly", "cron": "0 * * * *"}], model="sleeper", automatic=False)
    clock = Clock(at("2024-05-01T10:30"))
    scheduler = scheduler_at(store, clock)
    for hour in range(10, 15):
        clock.now = at(f"2024-05-01T{hour}:30")
        scheduler.tick()

    assert runs(store) == []
    for name, reason in (("noop/hourly", "enabled: false"), ("sleeper/hourly", "automatic: false")):
        state = overview(scheduler, name)
        assert firings(scheduler, name) == []
        assert not state.active and reason in (state.paused_by or "")
        assert state.next_fire_at is None

    set_schedules(workspace, [{"name": "hourly", "cron": "0 * * * *", "enabled": True}])
    set_schedules(workspace, [{"name": "hourly", "cron": "0 * * * *"}], model="sleeper", automatic=True)
    clock.now = at("2024-05-01T14:40")
    scheduler.tick()  # switched on: the ticks it was off for are not caught up
    assert runs(store) == []
    clock.now = at("2024-05-01T15:00")
    scheduler.tick()
    assert {f.cause for name in ("noop/hourly", "sleeper/hourly") for f in firings(scheduler, name)} == {
        "tick:2024-05-01T15:00:00+00:00"
    }
    assert len(runs(store)) == 2


def test_a_server_whose_profile_is_not_automatic_leaves_schedules_alone(store: Platform, workspace: Path) -> None:
    set_schedules(workspace, [{"name": "hourly", "cron": "0 * * * *"}])
    clock = Clock(at("2024-05-01T10:30"))
    scheduler_at(store, clock).tick()
    clock.now = at("2024-05-01T11:00")

    manual = scheduler_at(store, clock, automatic=False)
    assert manual.tick() == 0
    assert overview(manual, "noop/hourly").paused_by == "this server's profile sets automatic: false"
    assert runs(store) == []
    assert scheduler_at(store, clock).tick() == 1  # a server that is automatic still fires the tick


# --- run now, over HTTP ---------------------------------------------------------------------------


def test_run_now_fires_at_once_and_leaves_the_next_tick_alone(client: TestClient, workspace: Path) -> None:
    each = [{"label": "a"}, {"label": "b"}]
    set_schedules(workspace, [{"name": "yearly", "cron": "0 3 1 1 *", "timezone": "Europe/Paris", "each": each}])
    [before] = client.get("/api/v1/schedules").json()
    assert before["name"] == "noop/yearly" and before["active"] is True
    assert before["next_fire_at_local"].endswith("T03:00:00+01:00")

    response = client.post("/api/v1/schedules/noop/yearly/run")

    assert response.status_code == 201, response.text
    firing = response.json()
    assert firing["status"] == "submitted" and firing["cause"].startswith("manual:")
    assert len(firing["run_ids"]) == 2
    finished = [wait_for_run(client.get, run_id) for run_id in firing["run_ids"]]
    assert [run["status"] for run in finished] == ["succeeded", "succeeded"]
    assert [run["params"]["label"] for run in finished] == ["a", "b"]
    [after] = client.get("/api/v1/schedules").json()
    assert after["next_fire_at"] == before["next_fire_at"]
    assert after["last_firing"]["id"] == firing["id"]
    assert after["last_fired_at"] is None  # no tick fired

    again = client.post("/api/v1/schedules/yearly/run")  # the short name, unique in the workspace
    assert again.status_code == 201 and again.json()["run_ids"] != []
    listed = client.get("/api/v1/schedules/noop/yearly/firings", params={"limit": 5}).json()
    assert [f["id"] for f in listed] == [again.json()["id"], firing["id"]]
    unknown = client.post("/api/v1/schedules/noop/nope/run")
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "unknown schedule 'noop/nope'"}
