"""Which tiles the Triton kernels run with: autotuned per shape bucket, or pinned by the environment.

Autotuning times every candidate tiling on the first call with a new tuning key and keeps
the fastest for the rest of the process. The key is the shape rounded up to powers of two
(`tune_key`), so a new clip length retunes only when it crosses a power of two.

Timing is noisy, so two processes (two runs, or two DDP ranks) can pick different tiles for
one key, and different tiles sum in a different order: the results then differ in the last
bits. To get the same tiles everywhere, pin them, per kernel, in the environment:

    STREAMER_ATTENTION_CONFIG="fwd:BLOCK_M=128,BLOCK_N=64,num_warps=8,num_stages=3;dq:..."

The kernels are "fwd", "dkdv" and "dq"; a pinned kernel is never tuned and uses these tiles
for every shape (so pick tiles that suit the shapes you run: a tall BLOCK_M wastes work on
streaming calls with few queries); the others still autotune.
`kernels.triton_backend.chosen_tiles()` returns the current tiles in this syntax, ready to pin.
"""

import os
from functools import lru_cache

CONFIG_ENV = "STREAMER_ATTENTION_CONFIG"
TUNED_KERNELS = ("fwd", "dkdv", "dq")
TILE_FIELDS = ("BLOCK_M", "BLOCK_N", "num_warps", "num_stages")
_EXAMPLE = "fwd:BLOCK_M=128,BLOCK_N=64,num_warps=8,num_stages=3"


def bucket(n: int) -> int:
    """n rounded up to a power of two, at least 16: every shape in a bucket shares one tuning."""
    return max(16, 1 << (n - 1).bit_length())


def tune_key(n_q: int, n_k: int, chunk: int, window_chunks: int) -> tuple[int, int, int, int]:
    """Bucketed (queries, keys, chunk, keys visible to a query): what the best tiles depend on."""
    return bucket(n_q), bucket(n_k), bucket(chunk), bucket(min(window_chunks * chunk, n_k))


def _parse_tiles(kernel: str, text: str) -> dict[str, int]:
    tiles = {}
    for item in text.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or name not in TILE_FIELDS or not value.isdigit():
            raise ValueError(f"${CONFIG_ENV}: {kernel!r} has {item.strip()!r}; write name=integer with names "
                             f"from {TILE_FIELDS}, e.g. {_EXAMPLE!r}")
        tiles[name] = int(value)
    missing = [name for name in TILE_FIELDS if name not in tiles]
    if missing:
        raise ValueError(f"${CONFIG_ENV}: {kernel!r} lacks {missing}; give all of {TILE_FIELDS}, e.g. {_EXAMPLE!r}")
    for name in ("BLOCK_M", "BLOCK_N"):
        if tiles[name] not in (16, 32, 64, 128, 256):
            raise ValueError(f"${CONFIG_ENV}: {kernel!r} {name}={tiles[name]}; use 16, 32, 64, 128 or 256")
    if tiles["num_warps"] not in (1, 2, 4, 8, 16) or tiles["num_stages"] < 1:
        raise ValueError(f"${CONFIG_ENV}: {kernel!r} needs num_warps in 1, 2, 4, 8, 16 and num_stages >= 1")
    return tiles


@lru_cache(maxsize=8)
def parse_pins(text: str) -> dict[str, dict[str, int]]:
    """'fwd:BLOCK_M=..,BLOCK_N=..,num_warps=..,num_stages=..;dq:...' -> {kernel: tiles}."""
    pins: dict[str, dict[str, int]] = {}
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        kernel, sep, tiles = (part.strip() for part in entry.partition(":"))
        if not sep or kernel not in TUNED_KERNELS:
            raise ValueError(f"${CONFIG_ENV}: {entry!r} names no kernel; start each ';'-separated entry with "
                             f"one of {TUNED_KERNELS} and a colon, e.g. {_EXAMPLE!r}")
        if kernel in pins:
            raise ValueError(f"${CONFIG_ENV}: {kernel!r} is pinned twice; keep one entry per kernel")
        pins[kernel] = _parse_tiles(kernel, tiles)
    return pins


def format_pins(pins: dict[str, dict[str, int]]) -> str:
    """The inverse of `parse_pins`."""
    return ";".join(f"{kernel}:" + ",".join(f"{name}={tiles[name]}" for name in TILE_FIELDS)
                    for kernel, tiles in pins.items())


def pinned_tiles(kernel: str) -> dict[str, int] | None:
    """The tiles $STREAMER_ATTENTION_CONFIG pins for this kernel, or None (autotune)."""
    tiles = parse_pins(os.environ.get(CONFIG_ENV, "")).get(kernel)
    return dict(tiles) if tiles is not None else None
