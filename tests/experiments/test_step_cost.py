"""`experiments.step_cost`: a recipe's flags changed one part at a time, and steps timed."""

from __future__ import annotations

import pytest

from experiments.step_cost import one_rank, step_cost, with_flags

COMMAND = ["--preset", "tiny", "--data", "world", "--out", "r", "--batch", "8", "--curriculum", "600",
           "--latent-window", "64", "--age-slopes", "--first-sight-drills", "64", "--snippets", "4-32"]


def test_flags_are_set_or_dropped_with_their_values():
    changed = with_flags(COMMAND, [("--latent-window", "8"), ("--first-sight-drills", None), ("--age-slopes", None)])
    assert changed == ["--preset", "tiny", "--data", "world", "--out", "r", "--batch", "8", "--curriculum", "600",
                       "--latent-window", "8", "--snippets", "4-32"]
    assert COMMAND[11] == "64"  # the original is left alone
    with pytest.raises(ValueError, match="--clip-drills is not among"):
        with_flags(COMMAND, [("--clip-drills", "16")])


def test_one_rank_takes_its_share_of_the_batch_and_drills_at_full_length():
    command = one_rank(COMMAND, ranks=2)
    assert command[command.index("--batch") + 1] == "4" and "--curriculum" not in command
    assert command[command.index("--first-sight-drills") + 1] == "32"


def test_step_cost_times_rendering_and_steps():
    command = ["--preset", "tiny", "--data", "world", "--out", "r", "--batch", "2", "--questions", "2",
               "--snippets", "2-3", "--steps", "3", "--eval-every", "0", "--threads", "1", "--no-progress"]
    cost = step_cost(command, steps=3)
    assert cost["render clips s"] > 0 and cost["train step s"] > 0
    assert 0 < cost["render share"] < 1
    with pytest.raises(ValueError, match="2 or more steps"):
        step_cost(command, steps=1)
