"""A model's failure note (MODELRUNNER_FAILURE_NOTE) is its own word, read as untrusted: one line,
cut short, and never another file's text through a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelrunner.execution.failure_note import LONGEST_NOTE, read_failure_note

pytestmark = pytest.mark.store_free


def test_the_first_line_of_the_note_is_read(tmp_path: Path) -> None:
    note = tmp_path / "note"
    note.write_text("the notebook failed in cell 4 (In [4]): KeyError: 'west'\nmore\n", encoding="utf-8")

    assert read_failure_note(note) == "the notebook failed in cell 4 (In [4]): KeyError: 'west'"


def test_no_note_and_an_empty_note_add_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n\n", encoding="utf-8")

    assert read_failure_note(tmp_path / "none") is None
    assert read_failure_note(tmp_path / "empty") is None


def test_a_long_note_is_cut_short_and_control_characters_left_out(tmp_path: Path) -> None:
    note = tmp_path / "note"
    note.write_text("\x1b[31mred\x1b[0m " + "x" * 10_000, encoding="utf-8")

    read = read_failure_note(note)

    assert read is not None and len(read) == LONGEST_NOTE
    assert read.startswith("[31mred[0m x")


def test_a_note_that_links_to_another_file_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "server-secret"
    secret.write_text("the server's secret key\n", encoding="utf-8")
    (tmp_path / "symlink").symlink_to(secret)
    os.link(secret, tmp_path / "hardlink")

    assert read_failure_note(tmp_path / "symlink") is None
    assert read_failure_note(tmp_path / "hardlink") is None
    assert read_failure_note(tmp_path) is None  # a folder
