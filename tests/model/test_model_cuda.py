"""The bundled model on a GPU (skipped without CUDA).

On CUDA the training pass runs the latent model's chunk-causal attention (and a Transformer
combiner's; `tiny`'s is a TTM) through the Triton kernels; these tests hold it to the PyTorch
reference backend, in fp32 and under the trainer's bf16 autocast, and hold streaming on CUDA to
streaming on the CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import kernels.triton_backend
from kernels import BACKEND_ENV
from model import StreamerModel
from model_helpers import random_clip

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

BUNDLED = Path(__file__).resolve().parents[2] / "streamer" / "checkpoints" / "tiny"
QUESTIONS = [[("what color is the square?", "red", 5), ("which shape made the beep?", "blue circle", 9)],
             [("how many shapes are there?", "two", 12)]]


@pytest.fixture(autouse=True)
def exact_fp32_matmuls():
    """TF32 convolutions would differ from the CPU by ~1e-3; the comparisons want fp32."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.fixture
def kernel_launches(monkeypatch) -> list:
    """Grows by one entry at each Triton forward launch (patched once per test)."""
    launches = []
    forward = kernels.triton_backend.triton_forward
    monkeypatch.setattr(kernels.triton_backend, "triton_forward", lambda *a: launches.append(1) or forward(*a))
    return launches


def _training_pass(model: StreamerModel, backend: str, monkeypatch, launches: list, autocast: bool = False):
    """Loss and parameter gradients of one training pass over a fixed 2-clip, 16-snippet batch."""
    monkeypatch.setenv(BACKEND_ENV, backend)
    launches.clear()
    video, audio = random_clip(model.cfg, 2, 16, seed=3)
    batch = dict(video=video, audio=audio, **model.encode_batch_questions(QUESTIONS))
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        loss = model(batch).loss
    loss.backward()
    assert bool(launches) == (backend == "triton"), "the Triton kernels must run exactly when asked for"
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach().float(), grads


def _worst_gradient_error(got: dict, want: dict) -> float:
    """Largest |got - want| of any parameter, relative to that parameter's largest gradient.

    The scale is floored at 1e-4 of the model's largest gradient: some gradients are zero in
    exact arithmetic (a bias added to every softmax score shifts nothing) and hold only rounding,
    ~1e-9, which differs between two runs of one backend as much as between two backends.
    """
    assert got.keys() == want.keys()
    floor = 1e-4 * max(g.abs().max() for g in want.values())
    return max(((got[n] - want[n]).abs().max() / want[n].abs().max().clamp(min=floor)).item() for n in want)


def test_training_pass_on_the_kernels_matches_the_reference_backend(monkeypatch, kernel_launches):
    model = StreamerModel.load(BUNDLED, device="cuda").train()
    ref_loss, ref_grads = _training_pass(model, "reference", monkeypatch, kernel_launches)
    loss, grads = _training_pass(model, "triton", monkeypatch, kernel_launches)
    assert torch.allclose(loss, ref_loss, rtol=1e-4), (loss.item(), ref_loss.item())
    assert _worst_gradient_error(grads, ref_grads) < 1e-3


def test_bf16_autocast_training_pass_on_the_kernels_stays_near_fp32(monkeypatch, kernel_launches):
    """The trainer's `--amp bf16`: kernels in bf16 land as near fp32 as PyTorch's attention in bf16."""
    model = StreamerModel.load(BUNDLED, device="cuda").train()
    exact_loss, exact_grads = _training_pass(model, "reference", monkeypatch, kernel_launches)
    ref_loss, ref_grads = _training_pass(model, "reference", monkeypatch, kernel_launches, autocast=True)
    loss, grads = _training_pass(model, "triton", monkeypatch, kernel_launches, autocast=True)
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert (loss - exact_loss).abs() <= 2 * (ref_loss - exact_loss).abs() + 1e-2 * exact_loss.abs()
    assert _worst_gradient_error(grads, exact_grads) <= 2 * _worst_gradient_error(ref_grads, exact_grads) + 1e-2


def test_streaming_on_cuda_matches_the_cpu():
    cpu, gpu = StreamerModel.load(BUNDLED), StreamerModel.load(BUNDLED, device="cuda")
    video, audio = random_clip(cpu.cfg, 1, 10, seed=4)
    states = {"cpu": cpu.init_state(1), "cuda": gpu.init_state(1, device="cuda")}
    with torch.no_grad():
        for t in range(video.shape[1]):
            states["cpu"] = cpu.step(states["cpu"], video[:, t], audio[:, t])
            states["cuda"] = gpu.step(states["cuda"], video[:, t].cuda(), audio[:, t].cuda())
    for name, value in states["cpu"].items():
        torch.testing.assert_close(states["cuda"][name].cpu(), value, rtol=1e-3, atol=1e-3, msg=name)
    for question in ("what color is the square?", "what sound did the blue circle make?"):
        assert "".join(gpu.answer(states["cuda"], question)) == "".join(cpu.answer(states["cpu"], question))
