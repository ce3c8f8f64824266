"""`streamer demo`: arguments refused in one line before anything is loaded."""

from __future__ import annotations

import pytest

from streamer.cli import main


@pytest.mark.parametrize("argv", [["--seed", "-1"], ["--seed", "99999999", "--clips", "2"]])
def test_clips_outside_the_split_are_one_line_errors(argv, capsys):
    """`demo --seed -1` ended in a traceback from inside the world."""
    assert main(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert "outside the 'test' split" in err and len(err.strip().splitlines()) == 1
