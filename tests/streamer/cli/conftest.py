"""A small random checkpoint for the command-line tests, so none depends on the bundled model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model import ModelConfig, StreamerModel


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-random")
    StreamerModel(ModelConfig.from_name("tiny")).save(folder)
    return folder
