"""PCM as the model hears it: any layout downmixed to mono, resampled to 16 kHz in a stream.

Accepted PCM layouts (`to_mono_float`, and so `Chunker.push_audio(pcm, t, rate, channels)`):
  - 1-D: interleaved samples (length a multiple of `channels`);
  - 2-D [samples, channels]: packed (PyAV's packed formats, sounddevice);
  - 2-D [channels, samples]: planar (PyAV's planar formats), told apart by `channels`;
    a square block is read as packed.
  dtypes: float32/float64 in [-1, 1], int16, int32 (full-scale integers).
"""

from __future__ import annotations

import math

import numpy as np

from streamer.state_fields import StateFields, join

MAX_RATE = 1_000_000  # Hz: above any audio interface (768 kHz); the resampler's filter table grows with the rate
# input samples one resampler may take (100 days at MAX_RATE, years at 48 kHz): its int64 filter positions stay exact
MAX_INPUTS = 2**43


class StreamingResampler:
    """Mono resampler to a fixed output rate whose output ignores packetisation.

    Output sample m sits at input position m·r_in/r_out; it is a windowed-sinc (Kaiser)
    sum over the input samples around it, taken from a table of filter phases. Each
    output depends only on absolute input indices, and every output is the same dot
    product of its input window with its phase row (einsum's inner loop, whose order of
    additions depends only on the window's length), so any split of the input gives
    bit-identical output.
    """

    ZERO_CROSSINGS = 32  # sharp enough to keep 7 kHz and reject 9 kHz at 48 -> 16 kHz
    ROLLOFF = 0.945
    KAISER_BETA = 8.6
    MAX_PHASES = 1024  # beyond this many exact phases, positions round to 1/1024 sample
    GATHER_ROWS = 256  # outputs per gather where the ratio is not whole: ~0.4 MB of windows and phase rows

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        g = math.gcd(self.rate_in, self.rate_out)
        self.up, self.down = self.rate_out // g, self.rate_in // g
        self.passthrough = self.up == self.down
        self.inputs = 0  # input samples fed so far
        self.outputs = 0  # output samples produced so far
        if self.passthrough:
            return
        cutoff = 0.5 * min(1.0, self.up / self.down) * self.ROLLOFF  # cycles per input sample
        half_width = self.ZERO_CROSSINGS / (2.0 * cutoff)
        self.half = int(math.ceil(half_width))
        self.phases = min(self.up, self.MAX_PHASES)
        offsets = np.arange(self.phases)[:, None] / self.phases + self.half - 1 - np.arange(2 * self.half)
        inside = np.abs(offsets) < half_width
        ratio = np.where(inside, offsets / half_width, 1.0)
        taper = np.where(inside, np.i0(self.KAISER_BETA * np.sqrt(1.0 - ratio**2)) / np.i0(self.KAISER_BETA), 0.0)
        self.bank = 2 * cutoff * np.sinc(2 * cutoff * offsets) * taper
        # input history, starting at absolute input index `history_start` (negative = zeros before the start)
        self.history = np.zeros(self.half, dtype=np.float64)
        self.history_start = -self.half

    def _positions(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Base input index and phase row of output samples m (integer arithmetic only)."""
        numerator = m * self.down
        base, remainder = numerator // self.up, numerator % self.up
        if self.phases == self.up:
            return base, remainder
        phase = (remainder * self.phases * 2 + self.up) // (2 * self.up)
        carry = phase == self.phases
        return base + carry, np.where(carry, 0, phase)

    def _windows(self, first: int, count: int, step: int) -> np.ndarray:
        """`count` filter-wide windows of the history from index `first`, `step` apart, as a view
        (made straight over the buffer: sliding_window_view costs more than the sums at 1024 samples)."""
        width, size = 2 * self.half, self.history.itemsize
        if first < 0 or first + (count - 1) * step + width > len(self.history):
            raise IndexError(f"resampler windows from {first} ({count}, {step} apart) leave its history "
                             f"of {len(self.history)} samples")
        return np.ndarray((count, width), self.history.dtype, self.history, first * size, (step * size, size))

    def _produce(self, end: int) -> np.ndarray:
        if end <= self.outputs:
            return np.zeros(0, dtype=np.float64)
        base, phase = self._positions(np.arange(self.outputs, end, dtype=np.int64))
        starts = base - self.half + 1 - self.history_start  # each output's window in the history
        # einsum without `optimize` never hands the sums to BLAS, whose order of additions may
        # depend on how many rows it gets; here it only depends on the window's length
        if self.up == 1:  # whole-number decimation (48 -> 16 kHz): one phase, windows `down` apart, no copy
            rows = self._windows(int(starts[0]), len(starts), self.down)
            out = np.einsum("ij,j->i", rows, self.bank[0], optimize=False)
        else:  # gathered windows and phase rows, a cache-sized slice of outputs at a time
            windows = self._windows(0, len(self.history) - 2 * self.half + 1, 1)
            out = np.empty(len(starts))
            for i in range(0, len(starts), self.GATHER_ROWS):
                part = slice(i, i + self.GATHER_ROWS)
                out[part] = np.einsum("ij,ij->i", windows[starts[part]], self.bank[phase[part]], optimize=False)
        self.outputs = end
        drop = max(0, self._history_start_after(end) - self.history_start)
        self.history = self.history[drop:]
        self.history_start += drop
        return out

    def feed(self, x: np.ndarray) -> np.ndarray:
        """Resample the next mono float64 block; returns the outputs it completes."""
        self.inputs += len(x)
        if self.passthrough:
            self.outputs += len(x)
            return x
        self.history = np.concatenate([self.history, x])
        return self._produce(self._outputs_after(self.inputs))

    def _outputs_after(self, inputs: int) -> int:
        """How many outputs `inputs` input samples complete (all of them when passing through)."""
        if self.passthrough:
            return inputs
        # outputs need input up to base + half (base + 1 + half where a rounded phase carries)
        available = inputs - self.half - (self.phases != self.up)
        return -(-(available * self.up) // self.down) if available > 0 else 0

    def _history_start_after(self, outputs: int) -> int:
        """The first input sample the outputs after the first `outputs` still need."""
        if outputs == 0:
            return -self.half
        return int(self._positions(np.array([outputs], dtype=np.int64))[0][0]) - self.half + 1

    def finish(self) -> np.ndarray:
        """The remaining outputs, as if the input ended with silence."""
        if self.passthrough:
            return np.zeros(0, dtype=np.float64)
        total = -(-(self.inputs * self.up) // self.down)
        self.history = np.concatenate([self.history, np.zeros(2 * self.half + 1)])
        return self._produce(total)

    def state_dict(self) -> dict:
        state = {"rate_in": self.rate_in, "rate_out": self.rate_out, "inputs": self.inputs, "outputs": self.outputs}
        if not self.passthrough:
            state.update(history=self.history.copy(), history_start=self.history_start)
        return state

    @classmethod
    def from_state_dict(
        cls, state: dict, fields: StateFields | None = None, path: str = ""
    ) -> StreamingResampler:
        """A resampler that goes on exactly where `state_dict` left it.

        Refuses (ValueError naming the field, under `path` in `fields`' record) what `feed` could
        not have left: a rate out of range, or output count, history or its start that disagree
        with the input count, which would fail or misplace samples on the next block.
        """
        fields = fields or StateFields("resampler state")
        fields.record(state, path or "resampler")

        def read(key: str, low: int, high: int) -> int:
            return fields.integer(fields.key(state, key, path), join(path, key), low, high)

        resampler = cls(read("rate_in", 1, MAX_RATE), read("rate_out", 1, MAX_RATE))
        inputs = read("inputs", 0, MAX_INPUTS)
        outputs = read("outputs", 0, MAX_INPUTS)
        if outputs != resampler._outputs_after(inputs):
            raise fields.error(join(path, "outputs"), f"is {outputs}, but {inputs} input samples make "
                               f"{resampler._outputs_after(inputs)} at {resampler.rate_in} -> {resampler.rate_out} Hz")
        resampler.inputs, resampler.outputs = inputs, outputs
        if resampler.passthrough:
            return resampler
        history_start = read("history_start", -resampler.half, MAX_INPUTS)
        if history_start != resampler._history_start_after(outputs):
            raise fields.error(join(path, "history_start"), f"is {history_start}, but after {outputs} outputs "
                               f"the filter needs input from {resampler._history_start_after(outputs)}")
        history = fields.array(fields.key(state, "history", path), join(path, "history"), np.float64, 1)
        if len(history) != inputs - history_start:
            raise fields.error(join(path, "history"), f"holds {len(history)} samples, but the input samples from "
                               f"{history_start} to {inputs} are {inputs - history_start}")
        resampler.history, resampler.history_start = history, history_start
        return resampler


def to_mono_float(pcm: np.ndarray, channels: int) -> np.ndarray:
    """PCM in any accepted layout (module docstring) → mono float64 in [-1, 1]."""
    pcm = np.asarray(pcm)
    if pcm.dtype == np.int16:
        data = pcm.astype(np.float64) / 32768.0
    elif pcm.dtype == np.int32:
        data = pcm.astype(np.float64) / 2147483648.0
    elif pcm.dtype in (np.float32, np.float64):
        data = pcm.astype(np.float64)
    else:
        raise ValueError(f"audio must be float32, float64, int16 or int32 PCM, got dtype {pcm.dtype}")
    if data.ndim == 1:
        if len(data) % channels:
            raise ValueError(
                f"interleaved audio of {len(data)} values does not divide into {channels} channels"
            )
        data = data.reshape(-1, channels)
    elif data.ndim == 2:
        if data.shape[1] == channels:
            pass  # packed [samples, channels]
        elif data.shape[0] == channels:
            data = data.T  # planar [channels, samples]
        else:
            raise ValueError(
                f"audio of shape {pcm.shape} has no axis of {channels} channels; pass [samples, channels] "
                "or [channels, samples]"
            )
    else:
        raise ValueError(f"audio must be 1-D (interleaved) or 2-D, got shape {pcm.shape}")
    return data.mean(axis=1) if channels > 1 else data[:, 0]
