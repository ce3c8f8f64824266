"""Launch settings of the Triton backend that need no GPU and no interpreter."""

import pytest
import torch

from kernels.triton_backend import dot_precision
from kernels.tuning import CONFIG_ENV, bucket, format_pins, parse_pins, pinned_tiles, tune_key


@pytest.fixture
def restore_matmul_precision():
    saved = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(saved)


@pytest.mark.parametrize("setting,want", [("highest", "ieee"), ("high", "tf32"), ("medium", "tf32")])
def test_fp32_dot_precision_follows_torch(setting, want, restore_matmul_precision):
    torch.set_float32_matmul_precision(setting)
    assert dot_precision(torch.float32) == want


@pytest.mark.parametrize("setting,want", [("ieee", "ieee"), ("tf32", "tf32")])
def test_fp32_dot_precision_follows_the_backend_setting(setting, want, restore_matmul_precision):
    torch.backends.cuda.matmul.fp32_precision = setting
    assert dot_precision(torch.float32) == want


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_keep_tritons_default(dtype, restore_matmul_precision):
    torch.set_float32_matmul_precision("high")
    assert dot_precision(dtype) is None


def test_buckets_are_powers_of_two_from_16():
    assert [bucket(n) for n in (1, 15, 16, 17, 1000, 1024, 1025)] == [16, 16, 16, 32, 1024, 1024, 2048]


def test_clip_lengths_in_one_bucket_share_a_tuning_key():
    # window None is passed to the kernels as n_k // chunk + 2 chunks: it must not split the bucket.
    assert tune_key(1000, 1000, 56, 1000 // 56 + 2) == tune_key(1020, 1020, 56, 1020 // 56 + 2)
    assert tune_key(1000, 1000, 56, 4) == (1024, 1024, 64, 256)
    assert tune_key(1000, 1000, 56, 4) != tune_key(1100, 1100, 56, 4)


def test_pins_round_trip():
    pins = {"fwd": {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3},
            "dq": {"BLOCK_M": 64, "BLOCK_N": 32, "num_warps": 4, "num_stages": 2}}
    assert parse_pins(format_pins(pins)) == pins
    assert parse_pins(" fwd : BLOCK_N=64, BLOCK_M=128 ,num_warps=8,num_stages=3 ; ") == {"fwd": pins["fwd"]}
    assert parse_pins("") == {}


@pytest.mark.parametrize("text,message", [
    ("fwd=BLOCK_M=64", "names no kernel"),
    ("bwd:BLOCK_M=64,BLOCK_N=64,num_warps=4,num_stages=3", "names no kernel"),
    ("fwd:BLOCK_M=64,BLOCK_N=64,num_warps=4", "lacks \\['num_stages'\\]"),
    ("fwd:BLOCK_M=48,BLOCK_N=64,num_warps=4,num_stages=3", "BLOCK_M=48"),
    ("fwd:BLOCK_M=64,BLOCK_N=64,num_warps=3,num_stages=3", "num_warps"),
    ("fwd:BLOCK_M=64,BLOCK_N=x,num_warps=4,num_stages=3", "name=integer"),
    ("fwd:BLOCK_M=64,BLOCK_N=64,warps=4,num_stages=3", "name=integer"),
    ("dq:BLOCK_M=64,BLOCK_N=64,num_warps=4,num_stages=3;dq:BLOCK_M=32,BLOCK_N=64,num_warps=4,num_stages=3",
     "pinned twice"),
])
def test_bad_pins_say_how_to_write_them(text, message):
    with pytest.raises(ValueError, match=f"{CONFIG_ENV}.*{message}"):
        parse_pins(text)


def test_pinned_tiles_read_the_environment(monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, "dkdv:BLOCK_M=32,BLOCK_N=128,num_warps=8,num_stages=3")
    assert pinned_tiles("dkdv") == {"BLOCK_M": 32, "BLOCK_N": 128, "num_warps": 8, "num_stages": 3}
    assert pinned_tiles("fwd") is None
    monkeypatch.delenv(CONFIG_ENV)
    assert pinned_tiles("dkdv") is None


def test_tune_key_names_kernel_arguments():
    pytest.importorskip("triton")
    from kernels import triton_chunk_attention as mod

    for kernel in (mod.fwd_kernel, mod.dkdv_kernel, mod.dq_kernel):
        assert set(mod.TUNE_KEY) <= set(kernel.arg_names), kernel.__name__
