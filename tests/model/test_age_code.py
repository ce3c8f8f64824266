"""The decoder's fixed age code: every age in the window told apart, older ones ordered, and
checkpoints from before it read exactly as they were."""

from __future__ import annotations

import dataclasses

import torch

from model import ModelConfig
from model.decoder import age_code
from model_helpers import make_model, micro_config


def _context_of_equal_snippets(amplitude: float, window: int = 16) -> torch.Tensor:
    """Context tokens of the h window when every snippet's latent tokens are the same."""
    cfg = micro_config()
    cfg = dataclasses.replace(cfg, latent=dataclasses.replace(cfg.latent, window=window),
                              decoder=dataclasses.replace(cfg.decoder, age_code=amplitude))
    model = make_model(cfg)
    h = torch.randn(1, 1, model.cfg.combiner.out_tokens, cfg.latent.dim).expand(1, window, -1, -1)
    with torch.no_grad():
        context, _ = model.decoder.context(torch.zeros(1, cfg.combiner.memory_tokens, cfg.combiner.dim), h,
                                           torch.ones(1, window, dtype=torch.bool))
    return context[0, 1 + cfg.combiner.memory_tokens:].view(window, cfg.combiner.out_tokens, -1)[:, 0]


def test_without_the_code_equal_snippets_of_any_age_look_the_same():
    """The failure the code fixes: learned ages that never moved apart leave no clock at all."""
    tokens = _context_of_equal_snippets(0.0)
    assert torch.allclose(tokens, tokens[:1].expand_as(tokens), atol=1e-6)


def test_with_the_code_every_age_in_the_window_is_told_apart():
    tokens = _context_of_equal_snippets(0.1)
    distances = torch.cdist(tokens, tokens) + torch.eye(len(tokens)) * 1e9
    assert distances.min() > 0.05


def test_the_slowest_dimensions_rise_with_age_over_the_whole_window():
    """So "which came first" is one direction in key space, for any two ages in the window."""
    code = age_code(torch.arange(64), 128, 0.1)
    assert code.shape == (64, 128) and code.abs().max() <= 0.1 + 1e-6
    slow_sines = code[:, 96::2]  # periods of 2π·10,000^(96/128) ≈ 6,300 snippets and longer
    assert bool((slow_sines[1:] > slow_sines[:-1]).all())


def test_a_config_from_before_the_code_reads_as_off_and_keeps_its_fingerprint():
    cfg = ModelConfig.from_name("tiny")
    data = cfg.to_dict()
    del data["decoder"]["age_code"]
    old = ModelConfig.from_dict(data)
    assert old.decoder.age_code == 0.0
    assert old.fingerprint_dict() == cfg.fingerprint_dict() and "age_code" not in str(old.fingerprint_dict())
    coded = dataclasses.replace(cfg, decoder=dataclasses.replace(cfg.decoder, age_code=0.1))
    assert coded.fingerprint_dict() != cfg.fingerprint_dict()


def test_the_code_is_no_weight_so_old_checkpoints_load_unchanged():
    cfg = micro_config()
    coded = dataclasses.replace(cfg, decoder=dataclasses.replace(cfg.decoder, age_code=0.1))
    assert set(make_model(coded).state_dict()) == set(make_model(cfg).state_dict())
