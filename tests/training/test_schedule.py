from collections import Counter

from training.config import TrainConfig
from training.schedule import clip_lengths_at


def test_the_curriculum_grows_the_longest_clip_then_holds_it():
    cfg = TrainConfig(snippets=(4, 32), curriculum=100)
    assert clip_lengths_at(0, cfg) == (4, 4)
    assert clip_lengths_at(50, cfg) == (4, 18)
    assert clip_lengths_at(100, cfg) == clip_lengths_at(5000, cfg) == (4, 32)


def test_one_length_a_step_spans_the_range_the_curriculum_allows_and_repeats_on_resume():
    cfg = TrainConfig(snippets=(4, 32), curriculum=100, one_length_a_step=True, seed=3)
    lengths = [clip_lengths_at(step, cfg) for step in range(100, 3000)]
    assert all(low == high for low, high in lengths)
    counts = Counter(low for low, _ in lengths)
    assert set(counts) == set(range(4, 33))  # every length of the range, about equally often
    assert max(counts.values()) < 2 * min(counts.values())
    assert all(low <= 4 + round(28 * step / 100) for step in range(100) for low, _ in [clip_lengths_at(step, cfg)])
    assert [clip_lengths_at(s, cfg) for s in range(100, 3000)] == lengths  # a function of (seed, step) alone
    other_seed = TrainConfig(snippets=(4, 32), one_length_a_step=True, seed=4)
    assert [clip_lengths_at(s, other_seed) for s in range(100, 3000)] != lengths
