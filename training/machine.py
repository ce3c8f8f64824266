"""What a run ran on (CPU, cores, threads, device, versions), for the model card."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch


def machine_description(device: torch.device, world: int) -> dict[str, Any]:
    """What the run ran on, for the model card."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "processes": world, "device": str(device), "torch": torch.__version__,
            "python": platform.python_version(), "os": platform.platform()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
