"""What a stream's state is, as types: named tensors, all batch-first, none growing with time.

One definition for the model (which builds and steps states), the runtime (which batches,
saves and validates them) and the parts of the model that each own some of its tensors.
"""

from __future__ import annotations

import torch

State = dict[str, torch.Tensor]
StateSpec = dict[str, tuple[tuple[int, ...], torch.dtype]]  # name -> (shape, dtype)
