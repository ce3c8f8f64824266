"""The mistake studies sort answers by what went wrong, against hand-built timelines."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from experiments.ask_time import tally
from experiments.asking import split_sample
from experiments.binding_errors import first_play_context, sound_of_context, sound_of_error, who_made_error
from experiments.count_errors import asked_sound, closest_plays, counter_readout
from experiments.count_errors import tally as count_tally
from experiments.first_sight_readout import (CONTEXT_PARTS, context_part_masks, first_answer_position, group_rates,
                                             named_pair, older, readout)
from experiments.order_age import event_ages, lures, pair_details
from experiments.order_age import tally as order_tally
from experiments.order_lures import answered_right, ask, others_to_hide, pointer_probabilities, shown_others
from experiments.shape_errors import age_bin, visible_bin
from model import StreamerModel
from model.media import MEDIA_PRESETS
from streamer.engine import BUNDLED_CHECKPOINT
from training.data import world_sample
from training.evaluate import EvalQuestion
from training.samples import to_model_batch
from training.world import ShapeEvent, SoundEvent, Timeline
from training.world.clip import World, WorldConfig
from training.world.first_sight import FIRST_SIGHT_CLASSES
from training.world.vocab import COLORS, SOUNDS
from training.world.wild import wild_sample

sys.path.insert(0, str(Path(__file__).parents[1] / "model"))
from model_helpers import counting_config, make_model, micro_config, with_decoder  # noqa: E402


def _shape(kind: str, color: str, t_start: float, t_end: float) -> ShapeEvent:
    return ShapeEvent(kind, color, COLORS[color], 20.0, 32.0, 32.0, "still", 0.0, t_start, t_end)


# A red circle (drum) then a blue square (beep) on screen together; a chirp with no shape at 6 s.
TIMELINE = Timeline(64, 64, 10.0, (_shape("circle", "red", 0.0, 4.0), _shape("square", "blue", 1.0, 5.0)),
                    (SoundEvent("drum", 0.1, owner=0), SoundEvent("beep", 1.1, owner=1), SoundEvent("chirp", 6.0)))


def test_who_made_mistakes_are_told_apart():
    assert who_made_error(TIMELINE, 3.0, "red circle", "red circle") == "right"
    assert who_made_error(TIMELINE, 3.0, "red circle", "blue square") == "another shape of the clip"
    assert who_made_error(TIMELINE, 3.0, "red circle", "red triangle") == "colour right, shape wrong"
    assert who_made_error(TIMELINE, 3.0, "red circle", "green circle") == "shape right, colour wrong"
    assert who_made_error(TIMELINE, 3.0, "red circle", "white cross") == "neither"
    # a shape not yet seen at the question is no "other shape of the clip"
    assert who_made_error(TIMELINE, 0.5, "red circle", "blue square") == "neither"


def test_sound_of_mistakes_are_told_apart():
    assert sound_of_error(TIMELINE, 3.0, "drum", "drum") == "right"
    assert sound_of_error(TIMELINE, 3.0, "drum", "beep") == "another sound of the clip"
    assert sound_of_error(TIMELINE, 3.0, "drum", "silence") == "silence for a shape that sounded"
    assert sound_of_error(TIMELINE, 3.0, "drum", "whistle") == "a sound never played"
    assert sound_of_error(TIMELINE, 3.0, "silence", "drum") == "a sound for a silent shape"
    assert sound_of_error(TIMELINE, 3.0, "drum", "chirp") == "a sound never played"  # not played before 3 s


def test_the_sound_of_context_counts_other_plays_while_the_shape_was_on_screen():
    assert sound_of_context(TIMELINE, "red", "circle", 3.0) == (1, 3.0, 3.0)  # the square's beep
    assert sound_of_context(TIMELINE, "blue", "square", 3.0) == (0, 2.0, 2.0)  # the drum came before it
    assert sound_of_context(TIMELINE, "blue", "square", 9.0) == (0, 4.0, 8.0)  # gone at 5 s, before the chirp
    assert sound_of_context(TIMELINE, "green", "square", 9.0) is None


def test_the_play_context_counts_shapes_on_screen_and_the_time_since():
    assert first_play_context(TIMELINE, "drum", 3.0) == (1, 2.9)
    shapes, ago = first_play_context(TIMELINE, "beep", 3.0)
    assert shapes == 2 and abs(ago - 1.9) < 1e-9
    assert first_play_context(TIMELINE, "chirp", 7.0) == (0, 1.0)
    assert first_play_context(TIMELINE, "chirp", 5.0) is None  # not played yet


def test_shape_bins():
    assert [visible_bin(f) for f in (0.4, 0.8, 1.0)] == ["under 60% visible", "60-95% visible", "fully visible"]
    assert [age_bin(t) for t in (0.1, 1.0, 2.0)] == ["on screen < 0.64 s", "on screen 0.64-1.3 s", "on screen >= 1.3 s"]


def test_probe_delay_bins():
    from experiments.memory_probe import delay_bin

    assert [delay_bin(d) for d in (0, 1, 2, 15, 16, 31, 32, 500)] == [
        "0-1 snippets", "0-1 snippets", "2-7 snippets", "8-15 snippets", "16-31 snippets", "16-31 snippets",
        "32+ snippets", "32+ snippets"]


def _planted(n: int, written: bool, seed: int):
    """Probe examples of 4 candidate shapes: one of 8 tokens (picked by the sound) says which
    shape made the sound when `written`; otherwise the tokens are noise."""
    import torch

    from experiments.memory_probe import NAMES
    from training.world.vocab import SOUNDS

    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(n, 8, 16, generator=g)
    sound = torch.randint(0, len(SOUNDS), (n,), generator=g)
    maker = torch.randint(0, 4, (n,), generator=g)
    if written:
        tokens[torch.arange(n), sound % 8, :4] += 4 * torch.nn.functional.one_hot(maker, 4)
    mask = torch.zeros(n, len(NAMES), dtype=torch.bool)
    mask[:, :4] = True
    return tokens, sound, maker, mask, [0] * n


def test_the_probe_names_a_binding_that_is_there_and_only_then():
    from experiments.memory_probe import train_and_score

    there = train_and_score(_planted(4000, True, 0), _planted(500, True, 1), dim=16, steps=300)
    absent = train_and_score(_planted(4000, False, 0), _planted(500, False, 1), dim=16, steps=300)
    assert there["chance"] == absent["chance"] == 0.25
    assert there["accuracy"] > 0.9 and absent["accuracy"] < 0.35, (there, absent)


def test_answers_are_counted_by_ask_time_and_by_events_seen():
    clip = SimpleNamespace(timeline=TIMELINE, spec=MEDIA_PRESETS["tiny"])
    step = clip.spec.snippet_seconds
    early = EvalQuestion("what sound did the red circle make?", "drum", 4, "sound_of")  # 2 shapes, 2 sounds
    late = EvalQuestion("what sound did the red circle make?", "drum", 40, "sound_of")  # and the chirp
    assert 4 * step < 6.0 < 40 * step
    table = tally([(clip, early, "drum", "drum"), (clip, late, "drum", "beep"), (clip, late, "drum", "drum")])
    by = table["sound_of"]
    assert by["all"] == {"right": 2, "total": 3, "accuracy": 0.667}
    assert by["asked at 1-16 snippets"]["accuracy"] == 1.0 and by["asked at 33-64+"]["accuracy"] == 0.5
    assert by["<= 4 events before"]["total"] == 1 and by["5-8 events"]["total"] == 2


def test_count_answers_are_counted_by_the_true_count_the_length_and_the_plays_spacing():
    # two drums 0.2 s apart, two beeps 2.75 s (4.3 snippets of 0.64 s) apart, one chirp
    timeline = Timeline(64, 64, 30.0, TIMELINE.shapes,
                        (SoundEvent("drum", 0.1, owner=0), SoundEvent("drum", 0.5, owner=0),
                         SoundEvent("beep", 1.1, owner=1), SoundEvent("beep", 4.0, owner=1), SoundEvent("chirp", 6.0)))
    clip = SimpleNamespace(timeline=timeline, spec=MEDIA_PRESETS["tiny"])
    drums = EvalQuestion("how many times did you hear the drum?", "two", 5, "count_sound")
    beeps = EvalQuestion("how often did you hear the beep?", "two", 10, "count_sound")
    chirps = EvalQuestion("how many times did you hear the chirp?", "one", 12, "count_sound")
    late = EvalQuestion("how many times did you hear the drum?", "two", 40, "count_sound")
    assert [asked_sound(q.text) for q in (drums, beeps, chirps)] == ["drum", "beep", "chirp"]
    assert closest_plays(clip, drums) == "plays under 1 snippet apart"
    assert closest_plays(clip, beeps) == "plays 3+ snippets apart"
    assert closest_plays(clip, chirps) == "fewer than two plays"
    assert closest_plays(clip, EvalQuestion(beeps.text, "one", 3, "count_sound")) == "fewer than two plays"
    table = count_tally([(clip, drums, "two", "one"), (clip, beeps, "two", "two"), (clip, chirps, "one", "drum"),
                         (clip, late, "two", "three")])
    assert table["all"] == {"right": 1, "total": 4, "accuracy": 0.25}
    assert table["true count two"] == {"right": 1, "total": 3, "accuracy": 0.333}
    assert table["asked after 33+ snippets"]["total"] == 1 and table["asked after 1-16 snippets"]["total"] == 3
    assert table["wrong answers"] == {"too few": 1, "not a count": 1, "too many": 1}
    counter = {drums.text: "two", beeps.text: "one", chirps.text: "one"}  # what the sound's token would say
    table = count_tally([(clip, drums, "two", "one"), (clip, beeps, "two", "two"), (clip, chirps, "one", "drum")],
                        readout=lambda clip, q: counter[q.text])
    assert table["counter readout, all"] == {"right": 2, "total": 3, "accuracy": 0.667}
    assert table["counter readout, true count two"] == {"right": 1, "total": 2, "accuracy": 0.5}
    assert table["decoder, readout right"] == {"right": 0, "total": 2, "accuracy": 0.0}
    assert table["decoder, readout wrong"] == {"right": 1, "total": 1, "accuracy": 1.0}


def test_order_answers_are_counted_by_the_newer_events_age_and_the_pair():
    # a green triangle at 7 s, after the circle and the square have left the screen; a blue
    # circle at 15 s
    timeline = Timeline(64, 64, 30.0, (*TIMELINE.shapes, _shape("triangle", "green", 7.0, 9.0),
                                       _shape("circle", "blue", 15.0, 17.0)), TIMELINE.sounds)
    clip = SimpleNamespace(timeline=timeline, spec=MEDIA_PRESETS["tiny"])
    step = clip.spec.snippet_seconds
    together = EvalQuestion("which came first, the red circle or the blue square?", "red circle", 9, "order")
    apart = EvalQuestion("which came first, the green triangle or the red circle?", "red circle", 30, "order")
    sounds = EvalQuestion("what happened first, the beep or the drum?", "drum", 9, "order")
    newer, older = event_ages(clip, together)  # seen from the first frame that shows them
    assert older == 9.0 and 9 - 1.1 / step < newer <= 9 - 1.0 / step
    table = order_tally([(clip, together, "red circle", "red circle"), (clip, apart, "red circle", "green triangle"),
                         (clip, sounds, "drum", "whistle")])
    assert table["all"] == {"right": 1, "total": 3, "accuracy": 0.333}
    assert table["two shapes seen together"]["right"] == 1 and table["two shapes never seen together"]["right"] == 0
    assert table["two sounds"]["total"] == 1
    assert table["newer event 0-7 snippets old"]["total"] == 2 and table["newer event 16+ old"]["total"] == 1
    assert table["wrong answers named"] == {"the other of the two": 1, "neither": 1}
    # two shapes shown by snippet 9, four by snippet 30; the sound pair is not counted
    assert table["1-3 shapes shown before the question"] == {"right": 1, "total": 1, "accuracy": 1.0}
    assert table["4-7 shapes shown"] == {"right": 0, "total": 1, "accuracy": 0.0} and "8+ shapes shown" not in table
    # the circle and square first appeared 1 s apart; the triangle and circle 7 s (about 11 snippets)
    assert table["1-3 shapes shown before the question, first sights under 8 snippets apart"]["total"] == 1
    assert table["4-7 shapes shown, first sights 8+ snippets apart"]["total"] == 1
    # by snippet 30 the blue square and the blue circle are shown too; only the blue circle
    # shares a colour or a shape (the circle) with the green triangle or the red circle
    assert pair_details(clip, apart)[1] == "4-7 shapes shown, 0-2 others share a colour or shape"
    assert table["4-7 shapes shown, 0-2 others share a colour or shape"] == {"right": 0, "total": 1, "accuracy": 0.0}
    # nothing was seen before the red circle, the older of the circle and the square
    assert pair_details(clip, together)[2] == ("1-3 shapes shown before the question, no shape like the newer one "
                                               "seen before both")
    # the red circle, seen first of all, shares its shape with the blue circle
    lured = EvalQuestion("which came first, the blue square or the blue circle?", "blue square", 30, "order")
    assert pair_details(clip, lured) == ("4-7 shapes shown, first sights 8+ snippets apart",
                                         "4-7 shapes shown, 0-2 others share a colour or shape",
                                         "4-7 shapes shown, a shape like the newer one seen before both",
                                         "two shapes, a shape like the newer one seen before both")
    assert lures(clip, lured) == ["red circle"] and lures(clip, together) == []


def test_the_first_sight_readout_names_the_thing_seen_longer_ago():
    assert named_pair("which came first, the red circle or the drum?") == ("red circle", "drum")
    assert named_pair("what happened first, the bell or the green square?") == ("bell", "green square")
    assert older("red circle", "drum", torch.tensor(0.5), torch.tensor(0.25), window=8) == "red circle"
    assert older("red circle", "drum", torch.tensor(0.0), torch.tensor(0.25), window=8) == "drum"
    assert older("red circle", "drum", torch.tensor(0.5), torch.tensor(0.45), window=8) is None  # under half a snippet


def test_a_groups_rates_split_the_answers_by_whether_the_tokens_were_right():
    rates = group_rates({"questions": 10, "tokens right": 8, "answer right": 7, "answer right, tokens right": 6,
                         "answer right, tokens wrong or undecided": 1})
    assert rates["tokens accuracy"] == 0.8 and rates["answer accuracy"] == 0.7
    assert rates["answer accuracy, tokens right"] == 0.75 and rates["answer accuracy, tokens wrong or undecided"] == 0.5


def test_the_first_sight_readout_counts_every_order_question():
    model = make_model(with_decoder(micro_config(), first_sight_classes=len(FIRST_SIGHT_CLASSES),
                                    first_sight_tokens=True, first_sight_age_slopes=True), seed=3)
    report = readout(model, "test", clips=2)
    counts = report["tokens' ages"]
    assert counts["questions"] == counts["right"] + counts["wrong"] + counts["undecided"] > 0
    assert counts["not a class"] == 0 and 0.0 <= counts["accuracy"] <= 1.0
    decoder = report["decoder at the first answer byte"]
    assert 0 <= decoder["read head right"] <= counts["questions"]
    assert 0 < decoder["first bytes differ"] <= counts["questions"]
    for part in CONTEXT_PARTS:
        assert 0 <= decoder[f"first byte right, {part}"] <= decoder["first bytes differ"]
    assert decoder["first bytes differ"] + decoder["first bytes the same"] == counts["questions"]
    assert 0.0 <= decoder["whole answer accuracy"] <= 1.0
    groups = report["by what was shown"]
    assert set(groups) <= {"two sounds", "1-3 shapes shown before the question", "4-7 shapes shown", "8+ shapes shown"}
    assert sum(g["questions"] for g in groups.values()) == counts["questions"]
    assert sum(g["tokens right"] for g in groups.values()) == counts["right"]
    whole = decoder["whole answer right, first bytes differ"] + decoder["whole answer right, first bytes the same"]
    assert sum(g["answer right"] for g in groups.values()) == whole
    for g in groups.values():
        assert g["answer right"] == g["answer right, tokens right"] + g["answer right, tokens wrong or undecided"]


def test_the_readouts_whole_answer_is_the_forward_passs_exact_match():
    """The readout's whole-answer score over the bundled model's `order` answers is the training
    forward pass's teacher-forced exact match (what greedy generation gives), right and wrong: clips
    are asked until both have been seen (the bundled model errs on about one `order` question in four)."""
    model = StreamerModel.load(BUNDLED_CHECKPOINT).eval()
    world = World(WorldConfig.preset("test", spec=model.cfg.media, kinds=("order",), questions_per_clip=4))
    readout_says, forward_says = [], []
    with torch.no_grad():
        for i in range(40):
            if i >= 6 and True in readout_says and False in readout_says:
                break
            sample = world_sample(world.clip(i))
            batch = to_model_batch(model, [sample])
            forward_says += model(batch).exact_match()[0].tolist()
            video, audio = torch.as_tensor(sample["video"])[None], torch.as_tensor(sample["audio"])[None]
            _, memories, h = model._clip_latents(video, audio)
            heard = model.clip_heard(audio)
            w = model.cfg.latent.window
            for q in sample["questions"]:
                chunks = q.ask_snippets - w + torch.arange(w)
                window = chunks.clamp(min=0)
                readout_says.append(first_answer_position(model, memories[:, q.ask_snippets], h[:, window],
                                                          (chunks >= 0)[None], q.text, q.answer,
                                                          None if heard is None else heard[:, window])[2]["whole context"])
    assert readout_says == forward_says and True in readout_says and False in readout_says


def test_the_readout_masks_each_part_of_the_context():
    model = make_model(with_decoder(micro_config(), first_sight_classes=len(FIRST_SIGHT_CLASSES),
                                    first_sight_tokens=True), seed=4)
    memory, classes = model.decoder.memory_tokens, len(FIRST_SIGHT_CLASSES)
    mask = torch.ones(1, 1 + memory + classes + 6, dtype=torch.bool)
    mask[0, -2:] = False  # snippets outside the stream stay hidden in every part
    parts = context_part_masks(model, mask)
    readable = {name: parts[name][0].nonzero().flatten().tolist() for name in CONTEXT_PARTS}
    tokens = list(range(1 + memory, 1 + memory + classes))
    snippets = list(range(1 + memory + classes, 1 + memory + classes + 4))
    assert readable["whole context"] == [0, *range(1, 1 + memory), *tokens, *snippets]
    assert readable["first-sight tokens only"] == [0, *tokens]
    assert readable["memory only"] == [0, *range(1, 1 + memory)]
    assert readable["no first-sight tokens"] == [0, *range(1, 1 + memory), *snippets]
    assert readable["null token only"] == [0]


def test_hiding_no_token_scores_the_answer_as_the_readout():
    """`order_lures.answered_right` with nothing hidden is the readout's whole-answer score, which
    the test above ties to the forward pass."""
    model = StreamerModel.load(BUNDLED_CHECKPOINT).eval()
    world = World(WorldConfig.preset("test", spec=model.cfg.media, kinds=("order",), questions_per_clip=4))
    w = model.cfg.latent.window
    asked = 0
    with torch.no_grad():
        for i in range(3):
            sample = world_sample(world.clip(i))
            video, audio = torch.as_tensor(sample["video"])[None], torch.as_tensor(sample["audio"])[None]
            _, memories, h = model._clip_latents(video, audio)
            heard = model.clip_heard(audio)
            for q in sample["questions"]:
                chunks = q.ask_snippets - w + torch.arange(w)
                window = chunks.clamp(min=0)
                args = (model, memories[:, q.ask_snippets], h[:, window], (chunks >= 0)[None])
                heard_window = None if heard is None else heard[:, window]
                whole, = answered_right(model, ask(*args, q.text, q.answer, heard_window), [[]])
                assert whole == first_answer_position(*args, q.text, q.answer, heard_window)[2]["whole context"]
                asked += 1
    assert asked > 0


def test_others_to_hide_are_shown_shapes_neither_named_nor_lures():
    # the red circle (0 s) lures the blue circle; the green triangle (7 s) and the blue square
    # (1 s) are the others shown by snippet 30
    timeline = Timeline(64, 64, 30.0, (*TIMELINE.shapes, _shape("triangle", "green", 7.0, 9.0),
                                       _shape("circle", "blue", 15.0, 17.0)), TIMELINE.sounds)
    clip = SimpleNamespace(timeline=timeline, spec=MEDIA_PRESETS["tiny"])
    question = EvalQuestion("which came first, the blue square or the blue circle?", "blue square", 30, "order")
    assert lures(clip, question) == ["red circle"]
    generator = torch.Generator().manual_seed(0)
    assert others_to_hide(clip, question, 1, generator) == ["green triangle"]
    assert others_to_hide(clip, question, 3, generator) == ["green triangle"]  # no more to hide
    assert others_to_hide(clip, question, 0, generator) == []
    assert shown_others(clip, question) == ["green triangle"]


def test_pointer_probabilities_average_the_answer_positions_of_every_layer():
    cfg = with_decoder(micro_config(), first_sight_classes=len(FIRST_SIGHT_CLASSES), first_sight_tokens=True,
                       first_sight_pointer=True)
    model = make_model(cfg, seed=3).eval()
    logits = torch.linspace(-4.0, 4.0, len(FIRST_SIGHT_CLASSES))
    w, m = cfg.latent.window, cfg.combiner.out_tokens
    with torch.no_grad():
        model.decoder.first_sight_pointer.zero_()
        model.decoder.first_sight_pointer_bias[-1] = logits  # every query of the last layer gives these
        model.decoder.first_sight_pointer[0, 2, 0] = 1.0  # the first layer's third class varies by position
        h = torch.randn(1, w, m, cfg.latent.dim)
        memory = torch.randn(1, model.decoder.memory_tokens, cfg.combiner.dim)
        got = pointer_probabilities(model, ask(model, memory, h, torch.ones(1, w, dtype=torch.bool),
                                               "which came first, the red circle or the drum?", "drum"))
    assert got.shape == (cfg.decoder.layers, len(FIRST_SIGHT_CLASSES))
    torch.testing.assert_close(got[-1], torch.sigmoid(logits))
    assert 0.0 < float(got[0, 2]) < 1.0 and float(got[0, 2]) != float(torch.sigmoid(torch.tensor(-3.0)))


def test_the_counter_readout_sums_the_plays_heard_in_the_window():
    cfg = counting_config()
    cfg = dataclasses.replace(cfg, latent=dataclasses.replace(cfg.latent, window=4))
    torch.manual_seed(0)
    model = StreamerModel(cfg).eval()
    plays = torch.zeros(1, 6, 2 * len(SOUNDS))
    plays[0, [0, 3, 4], len(SOUNDS) + SOUNDS.index("drum")] = torch.tensor([1.0, 0.9, 1.2])
    model.clip_heard = lambda audio: plays  # the head's plays, set by hand
    clip = SimpleNamespace(seed=1, audio_snippets=lambda: np.zeros((6, cfg.media.samples_per_snippet), np.float32))
    read = counter_readout(model, "test")
    asked = EvalQuestion("how many times did you hear the drum?", "three", 5, "count_sound")
    assert read(clip, asked) == "two"  # the window of 4 holds snippets 1-4: 0.9 + 1.2
    assert read(clip, EvalQuestion(asked.text, "one", 1, "count_sound")) == "one"
    assert read(clip, EvalQuestion("how often did you hear the beep?", "zero", 5, "count_sound")) == "zero"


def test_on_world_wild_the_counter_hears_the_audio_the_wild_path_made():
    cfg = counting_config()
    model = StreamerModel(cfg).eval()
    heard = []

    def clip_heard(audio):
        heard.append(audio)
        return torch.zeros(1, audio.shape[1], 2 * len(SOUNDS))
    model.clip_heard = clip_heard
    clip = World(WorldConfig.preset("wild", spec=cfg.media, kinds=("count_sound",), questions_per_clip=1)).clip(0)
    asked = EvalQuestion("how many times did you hear the drum?", "zero", 2, "count_sound")
    assert counter_readout(model, "wild")(clip, asked) == "zero"
    wild = torch.as_tensor(wild_sample(clip)["audio"])
    assert torch.equal(heard[0][0], wild) and not torch.equal(wild, torch.as_tensor(clip.audio_snippets())[:len(wild)])


def test_the_mistake_studies_stream_world_wild_through_the_wild_path():
    clip = World(WorldConfig.preset("wild", spec=MEDIA_PRESETS["tiny"], questions_per_clip=2)).clip(0)
    wild = split_sample(clip, "wild")
    assert torch.equal(torch.as_tensor(wild["audio"]), torch.as_tensor(wild_sample(clip)["audio"]))
    assert not np.array_equal(split_sample(clip, "test")["audio"][:len(wild["audio"])], wild["audio"])
