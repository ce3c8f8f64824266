"""experiments.company_readout answers `sound_of` and `who_made` from the tokens' company alone."""

from __future__ import annotations

import dataclasses

import torch

from experiments.company_readout import company_answer, maker_answer, readout
from model import ModelConfig, StreamerModel
from training.world.first_sight import FIRST_SIGHT_CLASSES
from training.world.vocab import SOUNDS

CLASSES = len(FIRST_SIGHT_CLASSES)
CIRCLE, SQUARE = FIRST_SIGHT_CLASSES.index("red circle"), FIRST_SIGHT_CLASSES.index("blue square")
DRUM, BEEP = FIRST_SIGHT_CLASSES.index("drum"), FIRST_SIGHT_CLASSES.index("beep")


def _company() -> torch.Tensor:
    company = torch.zeros(CLASSES, 2 * CLASSES)
    company[CIRCLE, DRUM] = 0.9  # the drum played at the circle's first sight
    company[CIRCLE, CLASSES + BEEP] = 0.6  # a beep one snippet later, less surely
    company[SQUARE, CLASSES + BEEP] = 0.7  # the square's beep began one snippet after it appeared
    company[DRUM, DRUM] = 1.0  # a sound's own presence at its first play is no shape's
    return company


def test_sound_of_is_the_sound_most_surely_present_at_or_just_after_the_first_sight():
    company = _company()
    assert company_answer(company, CIRCLE) == "drum"
    assert company_answer(company, SQUARE) == "beep"
    assert company_answer(company, FIRST_SIGHT_CLASSES.index("green cross")) == "silence"
    company[SQUARE, CLASSES + BEEP] = 0.4  # under one half: nothing heard
    assert company_answer(company, SQUARE) == "silence"


def test_who_made_is_the_seen_shape_whose_first_sight_came_with_the_sound():
    company = _company()
    seen = torch.zeros(CLASSES)
    seen[[CIRCLE, SQUARE, DRUM]] = 1.0
    assert maker_answer(company, seen, "drum") == "red circle"
    assert maker_answer(company, seen, "beep") == "blue square"  # 0.7 against the circle's 0.6
    seen[SQUARE] = 0.5  # seen less surely: the circle's beep weighs more
    assert maker_answer(company, seen, "beep") == "red circle"


def test_the_readout_reads_a_model_that_hears_its_sounds_apart():
    """With a hearing head the readout's presence, marks and decoder context take its sounds
    (`StreamerModel.clip_heard`): a decoder without them refuses to answer."""
    cfg = ModelConfig.from_name("tiny")
    cfg = dataclasses.replace(cfg, decoder=dataclasses.replace(
        cfg.decoder, first_sight_classes=CLASSES, first_sight_tokens=True, first_sight_company=True,
        first_sight_sounds=len(SOUNDS)))
    torch.manual_seed(0)
    report = readout(StreamerModel(cfg).eval(), "test", 2)
    asked = {kind: report.get(f"{kind} readout, all", {"total": 0})["total"] for kind in ("sound_of", "who_made")}
    assert sum(asked.values()) > 0
    for kind, total in asked.items():  # the decoder alone on the tokens answers the same questions
        if total:
            assert report[f"{kind} decoder reading the first-sight tokens alone"]["total"] == total
    if asked["sound_of"]:
        read = report["sound_of read head's weight on the shape's token at the first answer byte"]
        assert 0.0 <= read["median"] <= 1.0 and 0.0 <= read["mean"] <= 1.0
