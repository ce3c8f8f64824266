"""Dataset readers: the folder format through File + Chunker, bad data, batches, the world stream."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from model.media import MEDIA_PRESETS
from training.data import BadDataError, FolderDataset, SampleQuestion, WorldStream, collate, world_sample
from training.world import World, WorldConfig
from training.world.media_files import write_clip, write_dataset

SPEC = MEDIA_PRESETS["tiny"]
D = SPEC.snippet_seconds
CONFIG = WorldConfig.preset("test", snippets=(4, 6), questions_per_clip=4)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    write_dataset(out, CONFIG, clips=3, first=0, progress=False)
    return out


def _lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_folder_reader_gives_back_the_written_clips_and_questions(dataset_dir):
    data = FolderDataset(dataset_dir, SPEC)
    assert len(data) == 3 and not data.report.problems
    world = World(CONFIG)
    for i in range(3):
        clip, sample = world.clip(i), data[i]
        assert sample["video"].shape == clip.video_snippets().shape and sample["video"].dtype == np.uint8
        assert sample["audio"].shape == clip.audio_snippets().shape and sample["audio"].dtype == np.float32
        assert sample["questions"] == [SampleQuestion(q.text, q.answer, q.ask_snippets, q.kind) for q in clip.questions]
        assert np.abs(sample["video"].astype(int) - clip.video_snippets().astype(int)).mean() < 6
        assert np.corrcoef(sample["audio"].ravel(), clip.audio)[0, 1] > 0.9


def test_collate_pads_to_the_longest_clip_with_a_mask():
    world = World(WorldConfig.preset("test", snippets=(4, 7)))
    samples = [world_sample(world.clip(i)) for i in range(4)]
    lengths = [len(s["video"]) for s in samples]
    batch = collate(samples)
    b, t = len(samples), max(lengths)
    assert batch["video"].shape == (b, t, 8, 64, 64, 3) and batch["video"].dtype == torch.uint8
    assert batch["audio"].shape == (b, t, 10240) and batch["audio"].dtype == torch.float32
    assert batch["snippet_mask"].tolist() == [[k < n for k in range(t)] for n in lengths]
    short = int(np.argmin(lengths))
    assert batch["video"][short, lengths[short]:].abs().sum() == 0
    assert torch.equal(batch["video"][short, : lengths[short]], torch.from_numpy(samples[short]["video"]))
    assert batch["questions"][0] == samples[0]["questions"]


def test_user_data_with_start_end_and_no_ask_time(dataset_dir, tmp_path):
    source = dataset_dir / "clips" / "test-0000000.mp4"
    _lines(tmp_path / "annotations.jsonl", [
        {"video": str(source), "question": "what is happening?", "answer": "something", "start": D, "end": 3 * D},
        {"video": str(source), "question": "how many shapes?", "answer": "one", "t_ask": 2 * D, "start": D,
         "end": 3 * D},
    ])
    data = FolderDataset(tmp_path, SPEC)
    sample = data[0]
    clip = World(CONFIG).clip(0)
    assert len(sample["video"]) == 2  # [0.64, 1.92): two whole snippets
    assert np.abs(sample["video"].astype(int) - clip.video_snippets()[1:3].astype(int)).mean() < 6
    assert [(q.text, q.ask_snippets, q.kind) for q in sample["questions"]] == [
        ("what is happening?", 2, "all"), ("how many shapes?", 1, "all")]


def _bad_dataset(dataset_dir, tmp_path):
    good = str(dataset_dir / "clips" / "test-0000000.mp4")
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    records = [
        {"video": good, "question": "how many shapes are on the screen?", "answer": "one", "t_ask": D},
        {"video": "missing.mp4", "question": "what is happening?", "answer": "nothing"},
        {"video": "corrupt.mp4", "question": "what is happening?", "answer": "nothing"},
        {"video": good, "question": "  ", "answer": "one"},
        {"video": good, "question": "what sound is playing?", "answer": "beep", "t_ask": 99.0},
    ]
    _lines(tmp_path / "annotations.jsonl", records)
    with (tmp_path / "annotations.jsonl").open("a") as lines:
        lines.write("{not json\n")


def test_bad_data_is_skipped_counted_and_named(dataset_dir, tmp_path):
    _bad_dataset(dataset_dir, tmp_path)
    with pytest.warns(RuntimeWarning, match="skipped 5 sample"):
        data = FolderDataset(tmp_path, SPEC)
    assert len(data) == 1 and [q.text for q in data[0]["questions"]] == ["how many shapes are on the screen?"]
    reasons = data.report.counts()
    assert reasons["missing file"] == 1 and reasons["empty question"] == 1
    assert sum(n for r, n in reasons.items() if r.startswith("corrupt")) == 1
    assert sum(n for r, n in reasons.items() if "past the end" in r) == 1
    assert sum(n for r, n in reasons.items() if r.startswith("not a JSON")) == 1
    summary = data.report.summary()
    assert "missing.mp4" in summary and "corrupt.mp4" in summary and "annotations.jsonl:6" in summary


def test_strict_mode_makes_bad_data_an_error(dataset_dir, tmp_path):
    _bad_dataset(dataset_dir, tmp_path)
    with pytest.raises(BadDataError, match=r"annotations.jsonl:4 .*empty question .*strict"):
        FolderDataset(tmp_path, SPEC, strict=True)
    _lines(tmp_path / "annotations.jsonl", [{"video": "missing.mp4", "question": "what?", "answer": "x"}])
    with pytest.raises(BadDataError, match="missing.mp4: missing file"):
        FolderDataset(tmp_path, SPEC, strict=True)


def test_a_file_cut_short_loses_only_the_questions_past_its_real_end(tmp_path):
    clip = World(WorldConfig.preset("test", snippets=(8, 8))).clip(3)
    path = write_clip(clip, tmp_path / "cut.webm")
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 6 // 10])
    _lines(tmp_path / "annotations.jsonl", [
        {"video": "cut.webm", "question": "early?", "answer": "yes", "t_ask": 2 * D},
        {"video": "cut.webm", "question": "late?", "answer": "no", "t_ask": 8 * D},
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the header still says 8 snippets: nothing is known bad yet
        data = FolderDataset(tmp_path, SPEC)
    with pytest.warns(RuntimeWarning, match=r"annotations.jsonl:2 .*past the decoded end"):
        sample = data[0]
    assert 2 <= len(sample["video"]) < 8
    assert [q.text for q in sample["questions"]] == ["early?"]
    assert "past the decoded end" in data.report.summary()


def test_a_folder_without_annotations_is_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match="annotations.jsonl"):
        FolderDataset(tmp_path, SPEC)


def test_world_stream_is_endless_seeded_and_split_across_workers():
    config = WorldConfig.preset("train", snippets=(4, 5), questions_per_clip=3)
    first = [s["name"] for _, s in zip(range(3), WorldStream(config, seed=1))]
    again = [s["name"] for _, s in zip(range(3), WorldStream(config, seed=1))]
    other = [s["name"] for _, s in zip(range(3), WorldStream(config, seed=2))]
    assert first == again and not set(first) & set(other)
    sample = next(iter(WorldStream(config, seed=1)))
    assert sample["video"].shape[1:] == (8, 64, 64, 3) and sample["audio"].shape[1:] == (10240,)
    loader = DataLoader(WorldStream(config, seed=1), batch_size=2, num_workers=2, collate_fn=collate)
    names = [name for _, batch in zip(range(3), loader) for name in batch["names"]]
    assert len(set(names)) == len(names) == 6


def test_cut_windows_hides_older_snippets_from_a_share_of_the_questions():
    from training.samples import cut_windows

    batch = {"ask_snippets": torch.zeros(64, 32, dtype=torch.long)}
    cut = cut_windows(batch, 0.5, 8, torch.Generator().manual_seed(1))["window_snippets"]
    assert cut.shape == (64, 32) and cut.dtype == torch.long
    assert 0.4 < float((cut < 8).float().mean()) < 0.6  # half of them, each cut to 0..7 snippets
    assert set(cut.unique().tolist()) == set(range(9))
    again = cut_windows(batch, 0.5, 8, torch.Generator().manual_seed(1))["window_snippets"]
    assert torch.equal(cut, again)
    assert bool((cut_windows(batch, 0.0, 8, torch.Generator())["window_snippets"] == 8).all())
