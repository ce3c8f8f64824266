"""Read a saved state back field by field, refusing damage with a message that names the field.

Saved state comes from files; a wrong type or an absurd value in one must be refused when it is
loaded, not fail later with a TypeError deep in the code that uses it, or make that code
allocate gigabytes. Fields are named by their path in the record: `segment.resampler.inputs`,
`pieces[0][1]`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

MAX_INT = 2**62  # every saved integer fits the int64 the state is written as, with room for the arithmetic on it


class StateFields:
    """Typed reads of one kind of saved record; `what` ("chunker state") starts every error."""

    def __init__(self, what: str) -> None:
        self.what = what

    def error(self, path: str, problem: str) -> ValueError:
        return ValueError(f"{self.what} field {path!r} {problem}")

    def record(self, value: object, path: str) -> dict:
        if not isinstance(value, dict):
            raise self.error(path, f"must be a mapping, got {_shown(value)}")
        return value

    def key(self, record: dict, key: str, path: str = "") -> object:
        """`record[key]`; its path is `path.key`."""
        if key not in record:
            raise self.error(join(path, key), "is missing")
        return record[key]

    def items(self, value: object, path: str, length: int | None = None) -> list:
        if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
            items = "" if length is None else f" of {length} items"
            raise self.error(path, f"must be a list{items}, got {_shown(value)}")
        return list(value)

    def integer(self, value: object, path: str, low: int = 0, high: int = MAX_INT) -> int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or not low <= value <= high:
            raise self.error(path, f"must be an integer in [{_limit(low)}, {_limit(high)}], got {_shown(value)}")
        return int(value)

    def number(self, value: object, path: str, bound: float = math.inf) -> float:
        """A finite float no further than `bound` from zero (a time in seconds, an offset)."""
        if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value)
                or not abs(value) <= bound):
            within = "" if bound == math.inf else f" within ±{bound:g}"
            raise self.error(path, f"must be a finite number{within}, got {_shown(value)}")
        return float(value)

    def optional_number(self, value: object, path: str, bound: float = math.inf) -> float | None:
        return None if value is None else self.number(value, path, bound)

    def flag(self, value: object, path: str) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            raise self.error(path, f"must be true or false, got {_shown(value)}")
        return bool(value)

    def array(self, value: object, path: str, dtype: type, ndim: int) -> np.ndarray:
        """A copy of a numpy array of exactly this dtype and rank; float values must be finite."""
        if not isinstance(value, np.ndarray) or value.dtype != dtype or value.ndim != ndim:
            raise self.error(path, f"must be a {ndim}-D {np.dtype(dtype).name} array, got {_shown(value)}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise self.error(path, "holds NaN or infinite values")
        return value.copy()


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _limit(n: int) -> str:
    """A bound as a reader takes it in: 2**62 rather than its 19 digits."""
    if abs(n) >= 2**20 and abs(n) & (abs(n) - 1) == 0:
        return f"{'-' if n < 0 else ''}2**{abs(n).bit_length() - 1}"
    return str(n)


def _shown(value: object) -> str:
    """The value as an error shows it: arrays by dtype and shape, anything else cut short."""
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {list(value.shape)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
