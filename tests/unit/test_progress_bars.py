"""Progress bars printed by models (tqdm's) read as progress, on output captured from real tqdm:
what the run's progress gets, how often, and what the log keeps of lines overwritten with \\r."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

from modelrunner.execution.carriage_returns import OverwrittenLines
from modelrunner.execution.job import AttemptJob
from modelrunner.execution.output_follower import OutputFollower
from modelrunner.execution.progress_bars import BarReports, read_bar
from modelrunner.execution.remote import RemoteJob, parse_job

pytestmark = pytest.mark.store_free


class _Log(io.BytesIO):
    def close(self) -> None:
        pass


def _tqdm_output(script: str) -> bytes:
    """What real tqdm writes to a pipe (its stderr) when ``script`` runs."""
    ran = subprocess.run(
        [sys.executable, "-c", "from tqdm import tqdm\nimport sys, time\n" + textwrap.dedent(script)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return ran.stderr


def _follow(chunks: list[bytes], bars: bool = True) -> tuple[bytes, list[tuple[float, str]]]:
    read, write = os.pipe()
    log, seen = _Log(), []
    done = OutputFollower().follow(read, log, lambda fraction, message: seen.append((fraction, message)), bars=bars)
    for chunk in chunks:
        os.write(write, chunk)
    os.close(write)
    assert done.wait(10)
    return log.getvalue(), seen


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


# Updates as tqdm 4.x prints them (copied from a pipe), with the \r that precedes each left out.
@pytest.mark.parametrize(
    ("update", "reading"),
    [
        ("Fitting:  45%|████▌     | 10/22 [00:00<00:00, 96.96it/s]", (10 / 22, "Fitting 10/22")),
        (" 20%|██        | 1/5 [00:00<00:00,  8.28it/s]", (0.2, "1/5")),
        ("temp:  67%|######6   | 2/3 [00:00<00:00,  8.32it/s]", (2 / 3, "temp 2/3")),
        ("100%|█████████▉| 1.99k/2.00k [00:00<00:00, 41.9kit/s]", (0.995, "1.99k/2.00k")),
        ("  0%|          | 0/22 [00:00<?, ?it/s]", (0.0, "0/22")),
        ("Region: north:  50%|█████     | 5/10 [00:01<00:01]", (0.5, "Region: north 5/10")),
        ("Fitting:  45%|████▌     | 45/1", (0.45, "Fitting")),  # cut by a pipe read: its percentage
        ("45/100 [============>.................] - ETA: 2s - loss: 0.31", (0.45, "45/100")),  # Keras
    ],
)
def test_an_update_of_a_bar_reads_as_its_fraction_and_counts(update: str, reading: tuple[float, str]) -> None:
    found = read_bar(update.encode())
    assert found is not None
    assert found[0] == pytest.approx(reading[0])
    assert found[1] == reading[1]


@pytest.mark.parametrize(
    "text",
    ["loss 45% lower than before", "read 3/10 regions", "::progress:: 0.5 half", "2024-01-02 | 10/22 |", ""],
)
def test_text_that_is_no_bar_is_no_progress(text: str) -> None:
    assert read_bar(text.encode()) is None


def test_a_real_tqdm_bar_moves_progress_to_its_end_and_leaves_one_line_in_the_log() -> None:
    output = _tqdm_output(
        """
        for step in tqdm(range(22), desc="Fitting", mininterval=0):
            time.sleep(0.06)
        print("fitted", file=sys.stderr)
        """
    )
    assert output.count(b"\r") >= 22  # what reaches a pipe: an update per step, all on one line
    logged, seen = _follow(_pieces(output, 100))
    lines = logged.decode().splitlines()
    assert len(lines) == 2 and lines[1] == "fitted"
    assert lines[0].startswith("Fitting: 100%|") and "22/22" in lines[0] and "\r" not in lines[0]
    # 22 steps over some 1.3 s, read at most once a second plus the bar's end.
    assert 2 <= len(seen) <= 4
    assert seen[-1] == (1.0, "Fitting 22/22")
    assert [fraction for fraction, _ in seen] == sorted(fraction for fraction, _ in seen)


def test_a_bar_of_10000_fast_updates_makes_few_progress_changes_and_ends_at_100_percent() -> None:
    output = _tqdm_output(
        """
        for step in tqdm(range(10_000), mininterval=0, miniters=1):
            pass
        """
    )
    assert output.count(b"\r") >= 10_000
    logged, seen = _follow(_pieces(output, 4096))
    assert len(seen) <= 5
    assert seen[-1] == (1.0, "10000/10000")
    assert logged.count(b"\r") == 0 and logged.decode().count("10000/10000") == 1
    assert len(logged) < 200  # instead of the ~800 kB the bar wrote


def test_of_nested_bars_the_outer_one_is_the_progress() -> None:
    output = _tqdm_output(
        """
        for epoch in tqdm(range(3), desc="epochs", mininterval=0):
            for batch in tqdm(range(5), desc="batches", leave=False, mininterval=0):
                time.sleep(0.01)
        """
    )
    assert b"batches:  40%" in output
    readings = [read_bar(update) for update in re.split(rb"\r|\n", output)]
    found = list(dict.fromkeys(reading for reading in readings if reading is not None))  # the end comes twice
    assert found == [(0.0, "epochs 0/3"), (1 / 3, "epochs 1/3"), (2 / 3, "epochs 2/3"), (1.0, "epochs 3/3")]


def test_explicit_progress_lines_take_over_from_bars() -> None:
    output = _tqdm_output(
        """
        for step in tqdm(range(4), desc="loading", mininterval=0):
            time.sleep(0.01)
        print("::progress:: 0.7 fitting", file=sys.stderr, flush=True)
        for step in tqdm(range(4), desc="later", mininterval=0):
            time.sleep(0.01)
        """
    )
    _, seen = _follow([output])
    assert seen[-1] == (0.7, "fitting")
    assert not any(message.startswith("later") for _, message in seen)


def test_bars_switched_off_move_nothing_and_reach_the_log_collapsed_all_the_same() -> None:
    output = _tqdm_output(
        """
        for step in tqdm(range(22), desc="Fitting", mininterval=0):
            pass
        """
    )
    logged, seen = _follow([output], bars=False)
    assert seen == []
    assert logged.decode().startswith("Fitting: 100%|") and logged.count(b"\r") == 0


def test_throttled_readings_keep_the_newest_and_report_it_at_the_end() -> None:
    now = [0.0]
    reported: list[tuple[float, str]] = []
    bars = BarReports(lambda fraction, message: reported.append((fraction, message)), 1.0, lambda: now[0])
    for step in range(1, 50):
        now[0] = step * 0.01
        bars.saw(step / 100, f"{step}/100")
    assert reported == [(0.01, "1/100")]
    now[0] = 1.2
    bars.saw(0.6, "60/100")
    bars.saw(0.61, "61/100")
    bars.flush()
    assert reported == [(0.01, "1/100"), (0.6, "60/100"), (0.61, "61/100")]


def test_overwritten_lines_keep_their_start_crlf_and_long_bars_snapshots() -> None:
    now = [0.0]
    lines = OverwrittenLines(snapshot_seconds=10, clock=lambda: now[0])
    logged = lines.feed(b"one\r\ntwo\nstep: ")
    logged += lines.feed(b"\r 10%|#| 1/10\r")
    now[0] = 11.0
    logged += lines.feed(b"\n 20%|##| 2/10")  # \r, then \n: the end of a line, not an update
    logged += lines.feed(b"\r 30%|###| 3/10")
    now[0] = 22.0
    logged += lines.feed(b"\r 90%|#########| 9/10")
    logged += lines.feed(b"\rdone\n")
    # A terminal would show " 90%" overwritten by "done": the log keeps the snapshot taken 11 s on.
    assert logged == b"one\r\ntwo\nstep: \r 10%|#| 1/10\r\n 20%|##| 2/10\r 90%|#########| 9/10\ndone\n"


def test_a_line_overwritten_when_the_output_ends_keeps_what_it_shows() -> None:
    lines = OverwrittenLines()
    logged = lines.feed(b"\rfirst\r")
    logged += lines.feed(b"    \r")  # tqdm(leave=False) blanks its bar at the end
    logged += lines.finish()
    assert logged == b"first"


def test_the_switch_reaches_remote_runners_in_the_job_description() -> None:
    job = AttemptJob(
        run_id=1,
        attempt_id=2,
        attempt_number=1,
        model_name="bars",
        model_version="v1",
        command=["python", "bars.py"],
        params={},
        snapshot_uri="file:///snapshots/v1.tar.gz",
        progress_bars=False,
    )
    assert parse_job(RemoteJob(job, "file:///artifacts", 5.0).to_json()).job.progress_bars is False
    described = json.loads(RemoteJob(replace(job, progress_bars=True), "file:///artifacts", 5.0).to_json())
    del described["progress_bars"]  # from a server that predates the switch: bars are read
    assert parse_job(json.dumps(described)).job.progress_bars is True
