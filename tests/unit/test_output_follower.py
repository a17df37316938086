"""The one thread that follows every attempt's output: all bytes reach the log, progress lines
are found however the pipe splits them, and many attempts are followed at once."""

from __future__ import annotations

import io
import os

from modelrunner.execution.output_follower import OutputFollower


class _Log(io.BytesIO):
    def close(self) -> None:  # kept readable after the attempt: the test reads it
        pass


def _follow(follower: OutputFollower, chunks: list[bytes]) -> tuple[bytes, list[tuple[float, str]]]:
    read, write = os.pipe()
    log, seen = _Log(), []
    done = follower.follow(read, log, lambda fraction, message: seen.append((fraction, message)))
    for chunk in chunks:
        os.write(write, chunk)
    os.close(write)
    assert done.wait(10)
    return log.getvalue(), seen


def test_progress_split_across_writes_is_found_and_every_byte_is_logged() -> None:
    chunks = [b"hello\n::progr", b"ess:: 0.25 a quarter\r\n", b"::progress:: 2 over\n", b"::progress:: 0.5 no newline"]
    logged, seen = _follow(OutputFollower(), chunks)
    assert logged == b"".join(chunks)
    assert seen == [(0.25, "a quarter"), (1.0, "over"), (0.5, "no newline")]


def test_an_overlong_line_is_logged_but_is_no_progress() -> None:
    long_line = b"::progress:: 0.1 " + b"x" * 200_000 + b"\n"
    logged, seen = _follow(OutputFollower(), [long_line[:70_000], long_line[70_000:], b"::progress:: 0.9 after\n"])
    assert len(logged) == len(long_line) + len(b"::progress:: 0.9 after\n")
    assert seen == [(0.9, "after")]


def test_many_attempts_at_once() -> None:
    follower = OutputFollower()
    pipes = [os.pipe() for _ in range(50)]
    logs = [_Log() for _ in pipes]
    done = [follower.follow(read, log, lambda f, m: None) for (read, _), log in zip(pipes, logs, strict=True)]
    for number, (_, write) in enumerate(pipes):
        os.write(write, f"attempt {number}\n".encode())
        os.close(write)
    assert all(event.wait(10) for event in done)
    assert [log.getvalue() for log in logs] == [f"attempt {n}\n".encode() for n in range(50)]
