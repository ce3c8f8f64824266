"""Checkpoints: save/load bit-exact, fingerprint, clear errors for broken folders, no pickle."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
import torch

from model import StreamerModel
from model_helpers import make_model, micro_config, random_clip


@pytest.fixture
def saved(tmp_path):
    model = make_model(micro_config("ttm"), seed=3)
    model.save(tmp_path / "ckpt")
    return model, tmp_path / "ckpt"


def test_save_load_is_bit_exact(saved):
    model, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    loaded = StreamerModel.load(path)
    assert loaded.fingerprint() == model.fingerprint()
    video, audio = random_clip(model.cfg, 1, 3, seed=1)
    s1, s2 = model.init_state(1), loaded.init_state(1)
    for t in range(3):
        s1, s2 = model.step(s1, video[:, t], audio[:, t]), loaded.step(s2, video[:, t], audio[:, t])
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    q, a = model.tokenizer.question_ids("what color?"), model.tokenizer.answer_ids("red")
    assert torch.equal(model.answer_logits(s1, q, a), loaded.answer_logits(s2, q, a))


def test_fingerprint_changes_with_any_weight(saved):
    model, _ = saved
    before = model.fingerprint()
    with torch.no_grad():
        model.decoder.head.weight[0, 0] += 1e-3
    assert model.fingerprint() != before


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_narrow_storage_halves_the_file_and_loads_the_rounded_weights(saved, tmp_path, dtype):
    model, path = saved
    model.save(tmp_path / "half", dtype=dtype)
    size = (tmp_path / "half" / "model.safetensors").stat().st_size
    assert size < 0.55 * (path / "model.safetensors").stat().st_size
    loaded = StreamerModel.load(tmp_path / "half")
    for name, weight in model.state_dict().items():
        got = loaded.state_dict()[name]
        assert got.dtype == weight.dtype
        expected = weight.to(dtype).to(weight.dtype) if weight.is_floating_point() else weight
        assert torch.equal(got, expected), name
    # the saved fingerprint names the widened weights that run, and differs from the fp32 original
    from safetensors import safe_open
    with safe_open(str(tmp_path / "half" / "model.safetensors"), "pt") as f:
        assert f.metadata()["fingerprint"] == loaded.fingerprint() != model.fingerprint()


def test_storage_dtype_must_be_a_float_type(saved, tmp_path):
    model, _ = saved
    with pytest.raises(ValueError, match="can be stored as"):
        model.save(tmp_path / "int", dtype=torch.int8)


def test_integer_weights_where_floats_belong_are_refused(saved):
    from safetensors.torch import load_file, save_file
    _, path = saved
    tensors = load_file(str(path / "model.safetensors"))
    name = next(n for n, t in tensors.items() if t.is_floating_point())
    tensors[name] = tensors[name].to(torch.int32)
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(ValueError, match="do not belong together"):
        StreamerModel.load(path)


def test_truncated_weights_give_a_clear_error(saved):
    _, path = saved
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        StreamerModel.load(path)


def test_corrupted_header_gives_a_clear_error(saved):
    _, path = saved
    data = bytearray((path / "model.safetensors").read_bytes())
    data[8:16] = b"\xff" * 8
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        StreamerModel.load(path)


def _stored(path: pathlib.Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _rewrite(path: pathlib.Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> None:
    """Write the weights file as another tool (or older code) would: metadata as given."""
    from safetensors.torch import save_file

    save_file(tensors, str(path / "model.safetensors"), metadata=metadata)


def test_checkpoints_carry_a_checksum_of_their_weights(saved):
    from model.checkpoint import CHECKSUM, weights_checksum

    _, path = saved
    tensors, metadata = _stored(path)
    assert metadata[CHECKSUM] == weights_checksum(tensors)


def test_flipped_bits_in_the_weights_fail_the_checksum(saved):
    _, path = saved
    data = bytearray((path / "model.safetensors").read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # tensor data follows the JSON header
    for offset in (start + (len(data) - start) // 3, start + 2 * (len(data) - start) // 3):
        data[offset] ^= 0x10  # a mantissa bit: the weight stays finite and plausible
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model\.safetensors fails its checksum.*copy the checkpoint again"):
        StreamerModel.load(path)


def test_a_checksum_that_no_longer_matches_is_refused_even_when_shapes_fit(saved):
    from model.checkpoint import CHECKSUM

    _, path = saved
    tensors, metadata = _stored(path)
    name = next(n for n, t in tensors.items() if t.is_floating_point() and t.dim() == 2)
    tensors[name] = tensors[name] * 1.001  # re-saved by a tool that kept the old metadata
    _rewrite(path, tensors, metadata)
    assert _stored(path)[1][CHECKSUM] == metadata[CHECKSUM]
    with pytest.raises(ValueError, match="fails its checksum"):
        StreamerModel.load(path)


def test_checkpoints_written_before_checksums_still_load(saved):
    from model.checkpoint import CHECKSUM

    model, path = saved
    tensors, metadata = _stored(path)
    del metadata[CHECKSUM]
    _rewrite(path, tensors, metadata)
    assert StreamerModel.load(path).fingerprint() == model.fingerprint()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("with_checksum", [False, True])
def test_non_finite_weights_are_refused_naming_the_tensor(saved, value, with_checksum):
    from model.checkpoint import CHECKSUM, weights_checksum

    _, path = saved
    tensors, metadata = _stored(path)
    name = next(n for n, t in sorted(tensors.items()) if t.is_floating_point() and t.dim() == 2)
    tensors[name][0, 0] = value
    metadata = {CHECKSUM: weights_checksum(tensors)} if with_checksum else None
    _rewrite(path, tensors, metadata)
    with pytest.raises(ValueError, match=rf"model\.safetensors: tensor {name} holds NaN or infinite values"):
        StreamerModel.load(path)


def test_non_finite_weights_are_not_saved(tmp_path):
    model = make_model(micro_config("ttm"))
    with torch.no_grad():
        model.decoder.head.weight[1, 2] = float("nan")
        model.latent.recon_out.bias.fill_(float("inf"))
    with pytest.raises(ValueError, match=r"tensor decoder\.head\.weight \(and 1 more\) hold NaN or infinite values; "
                                         r"not writing"):
        model.save(tmp_path / "diverged")
    assert not (tmp_path / "diverged").exists()


def test_weights_too_large_for_float16_are_not_exported_as_float16(saved, tmp_path):
    model, _ = saved
    with torch.no_grad():
        model.decoder.head.weight[0, 0] = 7e4  # float16 tops out at 65504
    with pytest.raises(ValueError, match=r"tensor decoder\.head\.weight holds values too large for torch\.float16 "
                                         r"\(up to 70000\); store the weights as bfloat16"):
        model.save(tmp_path / "half", dtype=torch.float16)
    model.save(tmp_path / "bf16", dtype=torch.bfloat16)
    assert StreamerModel.load(tmp_path / "bf16").decoder.head.weight[0, 0] == 70144  # bfloat16's nearest


def test_missing_and_extra_tensors_are_named(saved):
    _, path = saved
    tensors, _ = _stored(path)
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    tensors["decoder.extra"] = torch.zeros(2)
    _rewrite(path, tensors, None)
    with pytest.raises(ValueError, match=rf"missing \['{dropped}'\], unexpected \['decoder.extra'\]"):
        StreamerModel.load(path)


def test_the_bundled_checkpoint_carries_its_checksum():
    from model.checkpoint import CHECKSUM, weights_checksum
    from streamer.engine import BUNDLED_CHECKPOINT

    tensors, metadata = _stored(BUNDLED_CHECKPOINT)
    assert metadata[CHECKSUM] == weights_checksum(tensors)


def test_mismatched_config_gives_a_clear_error(saved):
    _, path = saved
    config = json.loads((path / "config.json").read_text())
    config["decoder"]["dim"] = 64
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not belong together|different models"):
        StreamerModel.load(path)


def test_missing_and_unreadable_files_give_clear_errors(saved):
    _, path = saved
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        StreamerModel.load(path)
    (path / "config.json").unlink()
    with pytest.raises(ValueError, match="has no config.json"):
        StreamerModel.load(path)
    with pytest.raises(ValueError, match="does not exist"):
        StreamerModel.load(path / "nowhere")


def test_unknown_config_keys_are_refused(saved):
    _, path = saved
    config = json.loads((path / "config.json").read_text())
    config["latent"]["future_field"] = 1
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unknown keys"):
        StreamerModel.load(path)


NO_PICKLE = """
import importlib.abc, pickle, sys, _pickle
import torch, safetensors.torch  # torch imports pickle for torch.load/save: the model must not need them

class NoPickle(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ("pickle", "_pickle", "cPickle"):
            raise ImportError(f"importing {name} is forbidden here")

def forbidden(*args, **kwargs):
    raise AssertionError("pickle was used")

for module in (pickle, _pickle):
    for name in ("load", "loads", "dump", "dumps", "Pickler", "Unpickler"):
        setattr(module, name, forbidden)
sys.modules.pop("pickle"); sys.modules.pop("_pickle")
sys.meta_path.insert(0, NoPickle())
try:
    import pickle
except ImportError:
    pass
else:
    raise SystemExit("the pickle guard did not hold")

from model import StreamerModel
model = StreamerModel.load(sys.argv[1])
model.save(sys.argv[2])
print(model.fingerprint(), StreamerModel.load(sys.argv[2]).fingerprint())
"""


def test_checkpoints_load_and_save_where_pickle_cannot_be_imported(saved, tmp_path):
    model, path = saved
    root = pathlib.Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", NO_PICKLE, str(path), str(tmp_path / "again")], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [model.fingerprint()] * 2
