"""The first-sight read loss with the sounds' tokens read apart (`--read-sounds-apart`): each
question's read target says which head of the decoder's last layer is pointed at its token,
SOUND_READ_HEAD for a sound and READ_HEAD for a shape, and the loss is −log of that head's weight."""

from __future__ import annotations

import pytest
import torch

from model import ModelConfig, StreamerModel
from model.decoder import READ_HEAD, SOUND_READ_HEAD
from model_helpers import make_model, micro_config, random_clip, teacher_forced_rows, with_decoder
from training.samples import TrainingData, read_heads, to_model_batch
from training.world.first_sight import FIRST_SIGHT_CLASSES
from training.world.vocab import SOUNDS

CLASSES = 5
QUESTION = "which shape made the drum sound?"


def _model(seed: int) -> StreamerModel:
    cfg = with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_tokens=True)
    cfg.loss.first_sight_read = 1.0
    cfg.validate()
    return make_model(cfg, seed=seed)


def _batch(model: StreamerModel, reads: list[list[int]], heads: list[list[int]] | None) -> dict[str, torch.Tensor]:
    video, audio = random_clip(model.cfg, 2, 4, seed=6)
    questions = [[(QUESTION, "red circle", 4), ("what color is the square?", "blue", 3)], [(QUESTION, "drum", 2)]]
    batch = dict(video=video, audio=audio, **model.encode_batch_questions(questions))
    batch["first_sight_reads"] = torch.tensor(reads)
    if heads is not None:
        batch["first_sight_read_heads"] = torch.tensor(heads)
    return batch


def test_the_loss_reads_each_questions_own_head():
    model = _model(seed=81)
    assert model.cfg.decoder.heads > SOUND_READ_HEAD
    batch = _batch(model, [[1, 3], [4, -1]], [[SOUND_READ_HEAD, READ_HEAD], [SOUND_READ_HEAD, READ_HEAD]])
    with torch.no_grad():
        out = model(batch)
        rows, ids, answer_at, context, mask = teacher_forced_rows(model, batch)
        _, _, weights = model.decoder(ids, torch.arange(ids.shape[1])[None], None, model.decoder.cross_kv(context),
                                      mask, read=True, read_heads=True)
    assert weights.shape == (ids.shape[0], model.cfg.decoder.heads, ids.shape[1], mask.shape[1])
    first = 1 + model.cfg.combiner.memory_tokens
    reads, heads = batch["first_sight_reads"][rows], batch["first_sight_read_heads"][rows]
    terms = [-torch.log(weights[n, heads[n], answer_at[n][am], first + reads[n]])
             for n, am in enumerate(batch["answer_mask"][rows]) if reads[n] >= 0]
    assert len(terms) == 3
    torch.testing.assert_close(out.first_sight_read_loss, torch.cat(terms).mean(), atol=1e-5, rtol=1e-5)
    # without heads every question is read by READ_HEAD, and the two heads' losses differ
    with torch.no_grad():
        plain = model(_batch(model, [[1, 3], [4, -1]], None)).first_sight_read_loss
    read_head_terms = [-torch.log(weights[n, READ_HEAD, answer_at[n][am], first + reads[n]])
                       for n, am in enumerate(batch["answer_mask"][rows]) if reads[n] >= 0]
    torch.testing.assert_close(plain, torch.cat(read_head_terms).mean(), atol=1e-5, rtol=1e-5)
    assert abs(float(plain - out.first_sight_read_loss)) > 1e-4


def test_a_head_the_decoder_lacks_is_refused():
    model = _model(seed=82)
    batch = _batch(model, [[1, -1], [2, -1]], [[model.cfg.decoder.heads, 0], [0, 0]])
    with pytest.raises(ValueError, match="--read-sounds-apart needs decoder.heads >= 2"):
        model(batch)


def test_sounds_are_read_by_the_sound_head_and_shapes_by_the_read_head():
    first_sound = len(FIRST_SIGHT_CLASSES) - len(SOUNDS)
    targets = torch.tensor([[-1, 0, first_sound - 1, first_sound, len(FIRST_SIGHT_CLASSES) - 1]])
    assert read_heads(targets).tolist() == [[READ_HEAD, READ_HEAD, READ_HEAD, SOUND_READ_HEAD, SOUND_READ_HEAD]]


def test_a_world_batch_reads_who_made_on_the_sound_head_and_sound_of_on_the_read_head():
    model = StreamerModel(ModelConfig.from_name("tiny"))
    data = TrainingData.open("world", model.cfg.media, questions_per_clip=8,
                             kind_weights=(("who_made", 10.0), ("sound_of", 10.0)))
    samples = [data.sample(i, (8, 8)) for i in range(6)]
    batch = to_model_batch(model, samples, first_sight_reads=True, read_kinds=("sound_of", "who_made"),
                           read_sounds_apart=True)
    assert "first_sight_read_heads" not in to_model_batch(model, samples, first_sight_reads=True,
                                                          read_kinds=("sound_of", "who_made"))
    reads, heads = batch["first_sight_reads"], batch["first_sight_read_heads"]
    kinds = {"who_made": set(), "sound_of": set()}
    for i, j in (reads >= 0).nonzero().tolist():
        kinds[samples[i]["questions"][j].kind].add(int(heads[i, j]))
    assert kinds == {"who_made": {SOUND_READ_HEAD}, "sound_of": {READ_HEAD}}
