"""Where and with what a benchmark ran, stored with every result: numbers without the machine
they came from (and whether it was idle) cannot be compared."""

from __future__ import annotations

import os
import platform
from importlib import metadata

import torch

PACKAGES = ("torch", "torchaudio", "triton", "av", "numpy", "msgpack", "pytest-benchmark", "streamer")


def resolve_device(choice: str) -> torch.device:
    """`auto` is CUDA when torch sees a GPU, else the CPU."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--bench-device cuda, but torch sees no CUDA device")
    return torch.device(choice)


def device_slug(device: torch.device) -> str:
    """`cpu`, or the GPU's name in lower case with dashes (`nvidia-h200`): the results file suffix."""
    if device.type != "cuda":
        return device.type
    name = torch.cuda.get_device_name(device).lower()
    return "-".join("".join(ch if ch.isalnum() else " " for ch in name).split())


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except FileNotFoundError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device, threads: int) -> dict:
    """The CPU, the cores this process may use, torch threads, memory, the GPU, and the load
    average when the run started (a busy machine gives slower, noisier numbers)."""
    info = {
        "cpu": cpu_model(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": threads,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
        "device": str(device),
    }
    try:
        with open("/proc/meminfo") as meminfo:
            info["memory_gib"] = round(int(meminfo.readline().split()[1]) / 2**20, 1)
    except FileNotFoundError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
    return info


def versions() -> dict:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found
