"""Launch settings of the Triton backend that need no GPU and no interpreter."""

import pytest
import torch

from kernels.triton_backend import dot_precision


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
