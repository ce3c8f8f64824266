"""The shapes-and-sounds world: determinism, every question kind, splits, the live source, media files."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from model.media import MEDIA_PRESETS
from streamer.chunker import Chunker
from streamer.cli import main as cli_main
from streamer.sources import Arrays, File
from training.world import AnswerKey, Clip, ShapeEvent, SoundEvent, Timeline, World, WorldConfig
from training.world.clip import SPLITS
from training.world.media_files import write_clip
from training.world.render import render_frames
from training.world.vocab import COLORS, HELD_OUT_COLOR_SHAPE, HELD_OUT_SHAPE_SOUND, QUESTION_KINDS

SPEC = MEDIA_PRESETS["tiny"]
D = SPEC.snippet_seconds  # 0.64 s
SMALL = WorldConfig.preset("train", snippets=(4, 8))


def shape(kind, color, x=32.0, y=32.0, direction="still", speed=0.0, t_start=0.0, t_end=10.0, size=20.0):
    return ShapeEvent(kind, color, COLORS[color], size, x, y, direction, speed, t_start, t_end)


def timeline(shapes=(), sounds=(), duration=8 * D):
    return Timeline(SPEC.width, SPEC.height, duration, tuple(shapes), tuple(sounds))


def ask(tl, t_ask, kind, **subject):
    return AnswerKey(tl, SPEC, t_ask).answer(kind, **subject)


# --------------------------------------------------------------------------- clips


def test_same_seed_gives_the_same_bytes_and_other_seeds_differ():
    a, b, c = Clip.generate(42, SMALL), Clip.generate(42, SMALL), Clip.generate(43, SMALL)
    assert a.frames.tobytes() == b.frames.tobytes()
    assert a.audio.tobytes() == b.audio.tobytes()
    assert a.questions == b.questions and a.timeline == b.timeline
    assert a.frames.shape != c.frames.shape or a.frames.tobytes() != c.frames.tobytes()


def test_clip_holds_exactly_T_snippets_of_media_on_the_snippet_grid():
    clip = Clip.generate(5, SMALL)
    t = clip.n_snippets
    assert 4 <= t <= 8
    assert clip.frames.shape == (t * SPEC.frames_per_snippet, SPEC.height, SPEC.width, 3)
    assert clip.frames.dtype == np.uint8
    assert clip.audio.shape == (t * SPEC.samples_per_snippet,) and clip.audio.dtype == np.float32
    assert clip.video_snippets().shape == (t, SPEC.frames_per_snippet, SPEC.height, SPEC.width, 3)
    snippets = clip.snippets()
    assert [s.index for s in snippets] == list(range(t))
    assert snippets[2].t0 == pytest.approx(2 * D) and snippets[2].t1 == pytest.approx(3 * D)
    np.testing.assert_array_equal(snippets[2].video, clip.frames[16:24])
    np.testing.assert_array_equal(snippets[2].audio, clip.audio[2 * 10240 : 3 * 10240])


def test_rendered_frames_show_the_shapes_in_their_colours():
    tl = replace(timeline([shape("square", "red", x=20, y=20, size=16)]), background=(30, 30, 30))
    frames = render_frames(tl, SPEC, 8, np.random.default_rng(0))
    assert tuple(frames[0, 20, 20]) == COLORS["red"]  # inside the square, no pixel noise
    assert tuple(frames[0, 50, 50]) == (30, 30, 30)


def test_questions_are_asked_on_snippet_boundaries_with_answers_from_the_timeline():
    for seed in range(20):
        clip = Clip.generate(seed, SMALL)
        assert 1 <= len(clip.questions) <= SMALL.questions_per_clip
        for q in clip.questions:
            assert 1 <= q.ask_snippets <= clip.n_snippets
            assert q.t_ask == pytest.approx(q.ask_snippets * D)
            assert q.kind in QUESTION_KINDS and q.text.endswith(("?", "."))
            assert q.answer == q.answer.strip().lower() and q.answer


def test_answers_never_depend_on_anything_after_the_ask_time():
    """Cut every clip's future away: each question keeps its answer."""
    checked = 0
    for seed in range(40):
        clip = Clip.generate(seed, SMALL)
        for q in clip.questions:
            past = replace(
                clip.timeline,
                shapes=tuple(s for s in clip.timeline.shapes if s.t_start < q.t_ask),
                sounds=tuple(s for s in clip.timeline.sounds if s.t_start < q.t_ask),
            )
            key = AnswerKey(past, SPEC, q.t_ask)
            answers = _all_answers(key, q.kind, clip.timeline)
            assert q.answer in answers, (seed, q)
            checked += 1
    assert checked > 100


def _all_answers(key, kind, full):
    """Every answer `kind` can give at this time, over all subjects in the full clip."""
    names = [s.name for s in full.shapes] + ["beep", "buzz", "chirp", "drum", "whistle"]
    subjects = {
        "color_now": [{"shape": s.shape} for s in full.shapes],
        "direction": [{"color": s.color, "shape": s.shape} for s in full.shapes],
        "sound_of": [{"color": s.color, "shape": s.shape} for s in full.shapes],
        "count_sound": [{"sound": k} for k in names[-5:]],
        "who_made": [{"sound": k} for k in names[-5:]],
        "order": [{"a": a, "b": b} for a in names for b in names if a != b],
    }.get(kind, [{}])
    return {key.answer(kind, **s) for s in subjects}


def test_kinds_filter_keeps_only_those_kinds():
    config = replace(SMALL, kinds=("count_now", "sound_now"))
    kinds = {q.kind for seed in range(10) for q in Clip.generate(seed, config).questions}
    assert kinds <= {"count_now", "sound_now"} and kinds
    with pytest.raises(ValueError, match="unknown question kinds"):
        replace(SMALL, kinds=("colour_now",))


def test_answers_are_balanced_enough_to_learn():
    answers: dict[str, Counter] = {}
    for seed in range(150):
        for q in Clip.generate(seed, SMALL).questions:
            answers.setdefault(q.kind, Counter())[q.answer] += 1
    assert set(answers) == set(QUESTION_KINDS), "every kind gets asked"
    for kind, counts in answers.items():
        top, n = counts.most_common(1)[0]
        assert n / sum(counts.values()) < 0.6, (kind, counts)
    for kind, empty in (("sound_now", "silence"), ("count_now", "zero"), ("describe", "nothing")):
        assert answers[kind][empty] / sum(answers[kind].values()) < 0.4, (kind, answers[kind])


# --------------------------------------------------------------------------- each question kind, by hand


def test_a_question_asked_before_anything_happened():
    tl = timeline([shape("circle", "red", t_start=2.0)], [SoundEvent("beep", 2.1, owner=0)])
    t = D
    assert ask(tl, t, "color_now", shape="circle") == "nothing"
    assert ask(tl, t, "shape_now") == "nothing"
    assert ask(tl, t, "count_now") == "zero"
    assert ask(tl, t, "direction", color="red", shape="circle") == "nothing"
    assert ask(tl, t, "sound_now") == "silence"
    assert ask(tl, t, "count_sound", sound="beep") == "zero"
    assert ask(tl, t, "first_shape") == "nothing"
    assert ask(tl, t, "first_color") == "nothing"
    assert ask(tl, t, "order", a="red circle", b="beep") == "nothing"
    assert ask(tl, t, "sound_of", color="red", shape="circle") == "silence"
    assert ask(tl, t, "who_made", sound="beep") == "nothing"
    assert ask(tl, t, "describe") == "nothing"


def test_one_shape_with_its_sound():
    tl = timeline([shape("circle", "red", t_start=0.5, t_end=3.0)],
                  [SoundEvent("beep", 0.6, owner=0), SoundEvent("beep", 1.5, owner=0)])
    t = 2 * D  # 1.28 s: the first beep (0.60-0.75 s) sounded in the last snippet [0.64, 1.28)
    assert ask(tl, t, "color_now", shape="circle") == "red"
    assert ask(tl, t, "color_now", shape="square") == "nothing"
    assert ask(tl, t, "shape_now") == "circle"
    assert ask(tl, t, "count_now") == "one"
    assert ask(tl, t, "direction", color="red", shape="circle") == "still"
    assert ask(tl, t, "sound_now") == "beep"
    assert ask(tl, t, "count_sound", sound="beep") == "one"  # the second beep is still to come
    assert ask(tl, 3 * D, "count_sound", sound="beep") == "two"
    assert ask(tl, 3 * D, "sound_now") == "beep"
    assert ask(tl, 4 * D, "sound_now") == "silence"
    assert ask(tl, t, "first_shape") == "circle"
    assert ask(tl, t, "first_color") == "red"
    assert ask(tl, t, "sound_of", color="red", shape="circle") == "beep"
    assert ask(tl, t, "who_made", sound="beep") == "red circle"
    assert ask(tl, t, "describe") == "red circle standing still"
    # gone after 3.0 s, but remembered
    assert ask(tl, 5 * D, "count_now") == "zero"
    assert ask(tl, 5 * D, "describe") == "nothing"
    assert ask(tl, 5 * D, "first_shape") == "circle"
    assert ask(tl, 5 * D, "sound_of", color="red", shape="circle") == "beep"


def test_a_sound_with_no_shape():
    tl = timeline([shape("square", "green", t_start=0.0, t_end=1.0)], [SoundEvent("drum", 2.0)])
    t = 4 * D  # 2.56 s, the drum (2.0-2.2 s) sounded in the last snippet
    assert ask(tl, t, "sound_now") == "drum"
    assert ask(tl, t, "who_made", sound="drum") == "nothing"
    assert ask(tl, t, "count_sound", sound="drum") == "one"
    assert ask(tl, t, "sound_of", color="green", shape="square") == "silence"
    assert ask(tl, t, "order", a="drum", b="green square") == "green square"
    assert ask(tl, t, "count_now") == "zero"


def test_a_shape_leaving_the_canvas_is_gone_once_its_box_is_off_screen():
    # 20 px square moving right at 32 px/s from x = 40: its box leaves x < 64 at t = (64 + 10 - 40) / 32 = 1.0625 s
    tl = timeline([shape("square", "blue", x=40, direction="right", speed=32.0, t_start=0.0, t_end=5.0)])
    assert ask(tl, D, "count_now") == "one"  # last frame 0.56 s: x = 57.9, partly on screen
    assert ask(tl, D, "describe") == "blue square moving right"
    assert ask(tl, D, "direction", color="blue", shape="square") == "right"
    assert ask(tl, 2 * D, "count_now") == "zero"  # last frame 1.2 s: x = 78.4, fully off
    assert ask(tl, 2 * D, "shape_now") == "nothing"
    assert ask(tl, 2 * D, "direction", color="blue", shape="square") == "right"  # still remembered
    assert ask(tl, 2 * D, "first_color") == "blue"


def test_two_shapes_in_order_of_appearance():
    tl = timeline(
        [shape("square", "blue", x=20, direction="down", speed=5.0, t_start=0.0),
         shape("triangle", "yellow", x=45, t_start=0.7)],
        [SoundEvent("chirp", 0.75, owner=1)],
    )
    t = 3 * D
    assert ask(tl, t, "count_now") == "two"
    assert ask(tl, t, "shape_now") == "square and triangle"
    assert ask(tl, t, "describe") == "blue square moving down and yellow triangle standing still"
    assert ask(tl, t, "color_now", shape="triangle") == "yellow"
    assert ask(tl, t, "first_shape") == "square"
    assert ask(tl, t, "first_color") == "blue"
    assert ask(tl, t, "order", a="yellow triangle", b="blue square") == "blue square"
    assert ask(tl, t, "order", a="blue square", b="yellow triangle") == "blue square"
    assert ask(tl, t, "sound_of", color="yellow", shape="triangle") == "chirp"
    assert ask(tl, t, "sound_of", color="blue", shape="square") == "silence"
    assert ask(tl, t, "who_made", sound="chirp") == "yellow triangle"


def test_bad_questions_and_timelines_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown question kind"):
        ask(timeline(), D, "colour_now")
    with pytest.raises(ValueError, match="unknown shape"):
        shape("hexagon", "red")
    with pytest.raises(ValueError, match="owner"):
        timeline(sounds=[SoundEvent("beep", 0.1, owner=3)])


# --------------------------------------------------------------------------- splits


def _pairs(clip):
    tl = clip.timeline
    color_shape = {(s.color, s.shape) for s in tl.shapes}
    shape_sound = {(tl.shapes[p.owner].shape, p.sound) for p in tl.sounds if p.owner is not None}
    return color_shape, shape_sound


def test_splits_use_disjoint_seed_ranges():
    ranges = sorted((c.seed_start, c.seed_start + c.size) for c in SPLITS.values())
    for (_, end), (start, _) in zip(ranges, ranges[1:]):
        assert end <= start
    assert World(WorldConfig.preset("test")).seed(0) == SPLITS["test"].seed_start
    with pytest.raises(ValueError, match="outside"):
        World(WorldConfig.preset("test")).seed(SPLITS["test"].size)


def test_train_never_shows_the_compositional_pairs_and_compositional_always_does():
    for index in range(60):
        color_shape, shape_sound = _pairs(World(SMALL).clip(index))
        assert not color_shape & HELD_OUT_COLOR_SHAPE and not shape_sound & HELD_OUT_SHAPE_SOUND
    comp = WorldConfig.preset("compositional", snippets=(4, 8))
    for index in range(60):
        color_shape, shape_sound = _pairs(World(comp).clip(index))
        assert color_shape & HELD_OUT_COLOR_SHAPE or shape_sound & HELD_OUT_SHAPE_SOUND, index


def test_long_split_is_four_times_the_training_length():
    train, long = SPLITS["train"].snippets, SPLITS["long"].snippets
    assert long == (4 * train[0], 4 * train[1])


def test_two_shapes_in_a_clip_never_share_shape_and_colour_and_at_most_two_are_on_screen():
    for seed in range(30):
        tl = Clip.generate(seed, WorldConfig.preset("long", snippets=(20, 30))).timeline
        pairs = [(s.color, s.shape) for s in tl.shapes]
        assert len(pairs) == len(set(pairs))
        for s in tl.shapes:
            assert sum(o.active(s.t_start) for o in tl.shapes) <= 2


# --------------------------------------------------------------------------- the live source


def test_world_source_streams_the_clip_in_time_order_and_the_chunker_rebuilds_it():
    clip = World(SMALL).clip(3)
    with clip.source(block=1000) as source:
        assert isinstance(source, Arrays) and not source.is_live
        items = list(source)
    assert clip.frames.tobytes() == World(SMALL).clip(3).frames.tobytes()
    times = [item.t for item in items]
    assert times == sorted(times)
    snippets = list(Chunker(SPEC).snippets(items))
    assert len(snippets) == clip.n_snippets
    for got, want in zip(snippets, clip.snippets()):
        np.testing.assert_array_equal(got.video, want.video)
        np.testing.assert_allclose(got.audio, want.audio, atol=1e-6)


def test_world_source_close_stops_the_stream():
    source = World(SMALL).clip(3).source(realtime=True)
    assert source.is_live
    iterator = iter(source)
    next(iterator)
    source.close()
    assert list(iterator) == []


# --------------------------------------------------------------------------- media files


@pytest.mark.parametrize("suffix", ["mp4", "webm"])
def test_media_round_trip_through_file_and_chunker(tmp_path, suffix):
    clip = Clip.generate(11, WorldConfig.preset("test", snippets=(5, 5)))
    path = write_clip(clip, tmp_path / f"clip.{suffix}")
    with File(path) as source:
        snippets = list(Chunker(SPEC, t0=0.0).snippets(source))
    assert len(snippets) == clip.n_snippets
    for k, snippet in enumerate(snippets):
        video_error = np.abs(snippet.video.astype(int) - clip.snippet_video(k).astype(int)).mean()
        assert video_error < 6, (k, video_error)
        correlation = np.corrcoef(snippet.audio, clip.snippet_audio(k))[0, 1]
        assert correlation > 0.9, (k, correlation)


def test_world_command_writes_clips_and_annotations(tmp_path, capsys):
    out = tmp_path / "data"
    code = cli_main(["world", "--out", str(out), "--clips", "2", "--seed", "7", "--snippets", "4-5",
                     "--split", "test", "--quiet"])
    assert code == 0
    records = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
    assert records and {r["video"] for r in records} == {"clips/test-0000007.mp4", "clips/test-0000008.mp4"}
    assert all((out / r["video"]).is_file() for r in records)
    clip = World(WorldConfig.preset("test", snippets=(4, 5))).clip(7)
    first = [r for r in records if r["video"] == "clips/test-0000007.mp4"]
    assert [(r["question"], r["answer"], r["t_ask"], r["kind"]) for r in first] == [
        (q.text, q.answer, round(q.t_ask, 6), q.kind) for q in clip.questions
    ]


def test_world_command_reports_bad_options(tmp_path, capsys):
    assert cli_main(["world", "--out", str(tmp_path), "--clips", "0", "--quiet"]) == 2
    assert "at least one clip" in capsys.readouterr().err
    assert cli_main(["world", "--out", str(tmp_path), "--kinds", "colour_now", "--quiet"]) == 2
    assert "unknown question kinds" in capsys.readouterr().err
