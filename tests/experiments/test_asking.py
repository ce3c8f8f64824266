"""The experiments' shared loader: `--zero PARAMETER` answers with a part switched off."""

from __future__ import annotations

import pytest

from experiments.asking import load, parser_for


def _args(*argv: str):
    return parser_for("An experiment.", clips=1, default_out="x.json").parse_args(["streamer/checkpoints/tiny", *argv])


def test_zero_sets_the_named_parameters_to_zero_and_leaves_the_rest():
    _, plain = load(_args())
    _, zeroed = load(_args("--zero", "decoder.first_sight_cues", "--zero", "decoder.null"))
    assert plain.decoder.first_sight_cues.any() and not zeroed.decoder.first_sight_cues.any()
    assert not zeroed.decoder.null.any()
    assert (zeroed.decoder.first_sight_token_class.weight == plain.decoder.first_sight_token_class.weight).all()


def test_zero_of_a_parameter_the_model_lacks_names_it():
    with pytest.raises(SystemExit, match="--zero decoder.first_sight_lookup: the model at .* has no such parameter"):
        load(_args("--zero", "decoder.first_sight_lookup"))
