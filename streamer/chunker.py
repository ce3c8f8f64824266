"""Cut timestamped frames and PCM into time-aligned snippets (ARCHITECTURE.md, "Seams": Chunker).

The chunker is pure and synchronous: push media as it arrives, pop the snippets that
are complete (or hand it a whole source: `for snippet in chunker.snippets(source)`).
Snippet k always covers exactly [t0 + k·D, t0 + (k+1)·D) with exactly F frames and
D·16000 samples, so the model sees the same grid whatever the source did.

Video is resampled by timestamp: output frame n sits at t0 + n/fps and shows the latest
input frame stamped at or before it (plus `video_tolerance`), so frames are dropped or
repeated as needed. Audio is downmixed to mono and resampled to 16 kHz by a streaming
windowed-sinc filter whose output does not depend on how the PCM was cut into blocks;
samples are placed by count from where the audio stream started, and stamps are only
consulted to detect real gaps (filled with silence) and overlaps (trimmed).

A stream may go on with another source (`start_source()`: the next file, a new camera).
Its clock starts wherever it likes (often at 0, long before where the stream stands), so
unless its first stamp already continues the stream, all its stamps are moved by one
offset so that it starts where the stream stopped; otherwise every frame would be "late".

Accepted PCM layouts for `push_audio(pcm, t, rate, channels)`: see `streamer.audio`.

Why one module of ~500 lines: the video slots, the audio samples and the decision to emit
share one snippet grid (t0, the next snippet, the lag and skip-over-silence rules read both
modalities at once) and one saved state, so they stay in one class. What stands alone (PCM
layouts, the streaming resampler) is in `streamer.audio`; reading a saved state back, with the
checks that refuse a damaged one, is in `streamer.chunker_state`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F

from model.media import AudioBlock, MediaItem, MediaSpec, Snippet, VideoFrame
from streamer.audio import MAX_RATE, StreamingResampler, to_mono_float
from streamer.chunker_state import JUMP_CONFIRMATIONS, STATE_VERSION, ChunkerStats, Segment, read_chunker_state

_SAME_STAMP = 1e-9  # seconds: two frame stamps closer than this are duplicates


def _check_stamp(t: object, what: str) -> float:
    if isinstance(t, bool) or not isinstance(t, numbers.Real):
        raise ValueError(f"{what} timestamp must be a number of seconds, got {type(t).__name__}")
    return float(t)


class Chunker:
    """Frames and PCM with timestamps in, fixed-grid `Snippet`s out.

    max_lag: seconds the newest stamp (any modality) may run past a snippet's end before
      the snippet is emitted anyway, missing parts filled; default two snippets.
    resize: scale frames to the spec's size; when False, frames must already have it.
    t0: start of snippet 0 on the source clock; default the first valid stamp seen.
    audio_tolerance: stamp drift (s) against the sample count treated as jitter.
    video_tolerance: a frame stamped this little after an output slot still counts for it.
    max_jump: a stamp this far (s) ahead of everything seen is dropped unless the next
      stamps of its modality confirm the jump.
    max_fill: longest run (s) of snippets with no data at all that is emitted filled;
      longer silences in both modalities are skipped (counted in stats.snippets_skipped).
    """

    def __init__(
        self,
        spec: MediaSpec,
        max_lag: float | None = None,
        resize: bool = True,
        *,
        t0: float | None = None,
        audio_tolerance: float = 0.04,
        video_tolerance: float = 0.01,
        max_jump: float = 30.0,
        max_fill: float = 10.0,
    ) -> None:
        self.spec = spec
        self.frames = spec.frames_per_snippet
        self.samples = spec.samples_per_snippet
        self.duration = spec.snippet_seconds
        self.max_lag = 2 * self.duration if max_lag is None else float(max_lag)
        if not self.max_lag >= 0:
            raise ValueError(f"max_lag must be >= 0 seconds, got {max_lag}")
        self.resize = resize
        self.audio_tolerance = float(audio_tolerance)
        self.video_tolerance = float(video_tolerance)
        self.max_jump = float(max_jump)
        self.max_fill_snippets = max(1, math.ceil(max_fill / self.duration))
        self.stats = ChunkerStats()
        self._t0 = None if t0 is None else _check_stamp(t0, "t0")
        self._next_k = 0  # next snippet to emit
        self._newest: float | None = None  # newest accepted stamp (audio: where the block starts)
        self._suspects: dict[str, list[float]] = {"video": [], "audio": []}
        # video: runs of finalised output slots [(end_slot, frame, filled)] from slot next_k·F
        self._runs: list[list] = []
        self._next_slot = 0
        self._last_t: float | None = None
        self._last_raw: np.ndarray | None = None
        self._last_small: np.ndarray | None = None
        # audio: pieces [(start_index, float32)] on the 16 kHz grid from t0, written in order
        self._pieces: list[list] = []
        self._audio_end: int | None = None  # grid index after the last written sample
        self._segment: Segment | None = None
        # the current source's clock → the stream's timeline (see start_source)
        self._offset = 0.0
        self._new_source = False

    # ---------------------------------------------------------------- inputs

    def start_source(self) -> None:
        """The next item opens another source on its own clock; the stream continues where it stopped.

        If that item's stamp already continues the stream (not before the newest stamp seen,
        nor more than `max_lag` after the data's end: the rest of the same recording, as
        when resuming a file from a saved position), stamps are kept as they are. Otherwise
        every stamp of the source is moved by one offset so it starts where the data ended
        (counted in `stats.sources_rebased`).
        """
        self._new_source = True

    def push(self, item: MediaItem) -> None:
        """Push a `VideoFrame` or an `AudioBlock`."""
        if isinstance(item, VideoFrame):
            self.push_video(item.rgb, item.t)
        elif isinstance(item, AudioBlock):
            self.push_audio(item.pcm, item.t, item.rate, item.channels)
        else:
            raise ValueError(f"push() takes a VideoFrame or an AudioBlock, got {type(item).__name__}")

    def push_video(self, rgb: np.ndarray, t: float) -> None:
        """One RGB uint8 frame [H, W, 3] (also [H, W] grey or [H, W, 4] RGBA) at t seconds."""
        frame = self._check_frame(rgb)
        t = self._on_timeline(_check_stamp(t, "video"))
        if not self._accept_stamp("video", t, t):
            return
        if t < self._t0 - self.duration:
            self.stats.video_frames_before_start += 1
            return
        if self._last_t is not None:
            if abs(t - self._last_t) <= _SAME_STAMP:
                self.stats.video_frames_duplicate += 1
                return
            if t < self._last_t:
                self.stats.video_frames_late += 1
                return
        self._note_newest(t)
        # slots stamped more than video_tolerance before this frame are now settled: they show the previous frame
        settled = math.ceil((t - self.video_tolerance - self._t0) * self.spec.fps - 1e-9)
        if settled > self._next_slot:
            self._settle_slots(settled, confirmed=True)
        self._last_t, self._last_raw, self._last_small = t, frame.copy(), None
        self.stats.video_frames_accepted += 1

    def push_audio(self, pcm: np.ndarray, t: float, rate: int, channels: int) -> None:
        """A block of PCM starting at t seconds; see the module docstring for layouts."""
        rate, channels = self._check_rate_channels(rate, channels)
        mono = to_mono_float(pcm, channels)
        t = _check_stamp(t, "audio")
        if len(mono) == 0:
            return
        t = self._on_timeline(t)
        end = t + len(mono) / rate
        if not self._accept_stamp("audio", t, end):
            return
        bad = ~np.isfinite(mono)
        if bad.any():
            self.stats.audio_samples_invalid_in += int(bad.sum())
            mono = np.where(bad, 0.0, mono)
        self._note_newest(t)
        self.stats.audio_blocks_accepted += 1
        segment = self._segment
        if segment is not None:
            drift = t - segment.next_t
            if drift < -self.audio_tolerance:  # overlaps audio already placed: trim its head
                overlap = round(-drift * rate)
                self.stats.audio_samples_trimmed += round(min(overlap, len(mono)) * self.spec.sample_rate / rate)
                if overlap >= len(mono):
                    return
                mono, t, drift = mono[overlap:], t + overlap / rate, 0.0
            if drift > self.audio_tolerance:
                self.stats.audio_gaps_filled += 1
                self._start_segment(t, rate, contiguous=False)
            elif rate != segment.resampler.rate_in:
                self.stats.audio_rate_changes += 1
                self._start_segment(t, rate, contiguous=True)
        else:
            self._start_segment(t, rate, contiguous=False)
        self._segment.inputs += len(mono)
        self._write(self._segment.resampler.feed(mono))

    # ---------------------------------------------------------------- outputs

    def snippets(self, items: Iterable[MediaItem], flush: bool = True) -> Iterator[Snippet]:
        """Push every item, yielding each snippet as soon as it is complete; when `items` end,
        `flush` emits the rest (False keeps a partial snippet pending for more input)."""
        for item in items:
            self.push(item)
            yield from self.pop_ready()
        if flush:
            yield from self.flush()

    def pop_ready(self) -> list[Snippet]:
        """Snippets both modalities cover, or whose allowed lag has passed."""
        return self._emit_ready(final=False)

    def flush(self) -> list[Snippet]:
        """End of input: emit every pending snippet that holds any data, gaps filled."""
        if self._segment is not None:
            self._write(self._segment.resampler.finish())
            self._segment = None
        return self._emit_ready(final=True)

    @property
    def t0(self) -> float | None:
        return self._t0

    # ---------------------------------------------------------------- state

    def state_dict(self) -> dict:
        """Pending data and counters as plain python values and numpy arrays."""
        return {
            "version": STATE_VERSION,
            "spec": [self.spec.height, self.spec.width, self.spec.fps, self.frames, self.spec.sample_rate],
            "t0": self._t0,
            "next_k": self._next_k,
            "newest": self._newest,
            "suspects": {name: list(stamps) for name, stamps in self._suspects.items()},
            "runs": [[end, None if frame is None else frame.copy(), filled] for end, frame, filled in self._runs],
            "next_slot": self._next_slot,
            "last_t": self._last_t,
            "last_raw": None if self._last_raw is None else self._last_raw.copy(),
            "pieces": [[start, data.copy()] for start, data in self._pieces],
            "audio_end": self._audio_end,
            "segment": None if self._segment is None else self._segment.state_dict(),
            "offset": self._offset,
            "new_source": self._new_source,
            "stats": asdict(self.stats),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` saved. Refuses, with a ValueError that names the field and
        changing nothing, state from another media spec or a damaged one (`streamer.chunker_state`)."""
        saved = read_chunker_state(state, self)
        self.stats = saved.stats
        self._t0, self._next_k, self._newest, self._suspects = saved.t0, saved.next_k, saved.newest, saved.suspects
        self._runs, self._next_slot = saved.runs, saved.next_slot
        self._last_t, self._last_raw, self._last_small = saved.last_t, saved.last_raw, None
        self._pieces, self._audio_end, self._segment = saved.pieces, saved.audio_end, saved.segment
        self._offset, self._new_source = saved.offset, saved.new_source

    # ---------------------------------------------------------------- internals

    def _check_frame(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8:
            raise ValueError(f"video frames must be uint8 RGB, got dtype {rgb.dtype}")
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        if rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise ValueError(f"video frames must be [H, W, 3] RGB (or [H, W] grey, [H, W, 4] RGBA), got {rgb.shape}")
        rgb = rgb[:, :, :3]
        if not self.resize and rgb.shape[:2] != (self.spec.height, self.spec.width):
            raise ValueError(
                f"frame is {rgb.shape[1]}x{rgb.shape[0]} but the spec wants {self.spec.width}x{self.spec.height}; "
                "pass resize=True to scale frames"
            )
        return rgb

    def _check_rate_channels(self, rate: object, channels: object) -> tuple[int, int]:
        if (isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 < rate <= MAX_RATE
                or rate != int(rate)):
            raise ValueError(f"audio rate must be a whole number of Hz from 1 to {MAX_RATE}, got {rate!r}")
        if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
            raise ValueError(f"audio channels must be a positive integer, got {channels!r}")
        return int(rate), int(channels)

    def _accept_stamp(self, modality: str, t: float, end: float) -> bool:
        """Drop unusable stamps (counted); set t0 from the first good one."""
        if not math.isfinite(t) or not math.isfinite(end):
            self.stats.stamps_invalid += 1
            return False
        if self._newest is not None and t > self._newest + self.max_jump:
            suspects = self._suspects[modality]
            if suspects and not suspects[-1] <= t <= suspects[-1] + self.max_jump:
                suspects.clear()
            suspects.append(t)
            if len(suspects) < JUMP_CONFIRMATIONS:
                self.stats.stamps_jumped += 1
                return False
            self.stats.clock_jumps += 1
        self._suspects[modality].clear()
        if self._t0 is None:
            self._t0 = t
        return True

    def _on_timeline(self, t: float) -> float:
        """A stamp of the current source on the stream's timeline (a new source's first stamp fixes the offset)."""
        if self._new_source and math.isfinite(t):
            self._new_source = False
            if self._newest is not None:
                end = self._continue_at()
                if not self._newest - self.audio_tolerance <= t + self._offset <= end + self.max_lag:
                    self._offset = end - t
                    self._suspects = {name: [] for name in self._suspects}
                    self.stats.sources_rebased += 1
        return t + self._offset

    def _continue_at(self) -> float:
        """Where a new source goes on: after the last snippet emitted when no data is pending
        (a flushed stream), else where the pending data ends: the audio fed, or the last frame
        shown for one output frame when the video runs past the audio."""
        next_snippet = self._t0 + self._next_k * self.duration
        audio_end = None
        if self._segment is not None:
            audio_end = self._segment.next_t
        elif self._audio_end is not None:
            audio_end = self._t0 + self._audio_end / self.spec.sample_rate
        data_ends = [end for end in (audio_end, self._last_t) if end is not None]
        if not data_ends or max(data_ends) <= next_snippet + _SAME_STAMP:
            return next_snippet
        if audio_end is not None and (self._last_t is None or audio_end > self._last_t):
            return max(next_snippet, audio_end)
        return max(next_snippet, self._last_t + 1.0 / self.spec.fps)

    def _note_newest(self, t: float) -> None:
        self._newest = t if self._newest is None else max(self._newest, t)

    def _slot_time(self, n: int) -> float:
        return self._t0 + n / self.spec.fps

    def _small_last(self) -> np.ndarray | None:
        if self._last_raw is not None and self._last_small is None:
            self._last_small = self._scaled(self._last_raw)
        return self._last_small

    def _scaled(self, rgb: np.ndarray) -> np.ndarray:
        size = (self.spec.height, self.spec.width)
        if rgb.shape[:2] == size:
            return np.ascontiguousarray(rgb)
        # antialiased bilinear on the uint8 pixels themselves: torch's fixed-point kernel is ~4x
        # cheaper than going through float32, and within one level of it
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
        y = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        return np.ascontiguousarray(y[0].permute(1, 2, 0).numpy())

    def _settle_slots(self, end: int, confirmed: bool) -> None:
        """Slots [next_slot, end) show the last frame.

        confirmed: a later frame arrived, so the last frame truly is the latest before these
        slots. Otherwise (lag, flush) slots past the last frame are filled: repeated, or
        black when no frame came yet.
        """
        frame = self._small_last()
        if frame is None:
            self._add_run(end, None, True)
            return
        if confirmed:  # repeats are resampling, unless the picture stalled for longer than max_lag
            stale = math.floor((self._last_t + self.max_lag - self._t0) * self.spec.fps + 1e-9) + 1
            stale = min(max(stale, self._next_slot), end)
            if stale > self._next_slot:
                self._add_run(stale, frame, False)
            if end > self._next_slot:
                self._add_run(end, frame, True)
            return
        # slots up to last_t + tolerance show a real frame; later ones repeat it
        real_end = math.floor((self._last_t + self.video_tolerance - self._t0) * self.spec.fps + 1e-9) + 1
        real_end = min(max(real_end, self._next_slot), end)
        if real_end > self._next_slot:
            self._add_run(real_end, frame, False)
        if end > self._next_slot:
            self._add_run(end, frame, True)

    def _add_run(self, end: int, frame: np.ndarray | None, filled: bool) -> None:
        self._runs.append([end, frame, filled])
        self._next_slot = end

    def _start_segment(self, t: float, rate: int, contiguous: bool) -> None:
        """Begin placing audio at t: after a gap (silence in between) or a rate change (seamless)."""
        if self._segment is not None:
            self._write(self._segment.resampler.finish())
        origin = round((t - self._t0) * self.spec.sample_rate)
        if self._audio_end is not None:
            origin = self._audio_end if contiguous else max(origin, self._audio_end)
        self._segment = Segment(t, 0, StreamingResampler(rate, self.spec.sample_rate))
        self._audio_end = origin

    def _write(self, samples: np.ndarray) -> None:
        start = self._audio_end
        self._audio_end = start + len(samples)
        floor = self._next_k * self.samples
        if start < 0:
            cut = min(len(samples), -start)
            self.stats.audio_samples_before_start += cut
            samples, start = samples[cut:], start + cut
        if start < floor:
            cut = min(len(samples), floor - start)
            self.stats.audio_samples_late += cut
            samples, start = samples[cut:], start + cut
        if len(samples):
            self._pieces.append([start, samples.astype(np.float32)])

    def _emit_ready(self, final: bool) -> list[Snippet]:
        out: list[Snippet] = []
        if self._t0 is None:
            return out
        while True:
            k = self._next_k
            start, end = self._t0 + k * self.duration, self._t0 + (k + 1) * self.duration
            video_covers = self._next_slot >= (k + 1) * self.frames
            audio_covers = self._audio_end is not None and self._audio_end >= (k + 1) * self.samples
            due = self._newest is not None and self._newest > end + self.max_lag
            if final:
                due = due or start < self._data_end()
            if not (video_covers and audio_covers) and not due:
                return out
            if due and self._skip_empty(k):
                continue
            out.append(self._emit(k))

    def _data_end(self) -> float:
        """End of the real data seen: audio placed, or the last frame's stamp."""
        ends = [-math.inf]
        if self._audio_end is not None:
            ends.append(self._t0 + self._audio_end / self.spec.sample_rate)
        if self._last_t is not None:
            ends.append(self._last_t + _SAME_STAMP)
        return max(ends)

    def _skip_empty(self, k: int) -> bool:
        """Jump over a long run of snippets with no data at all; True if it jumped."""
        next_data = math.inf  # first snippet >= k holding real data
        begin = self._next_k * self.frames
        for end, _, filled in self._runs:
            if not filled and end > k * self.frames:
                next_data = max(k, begin // self.frames)
                break
            begin = end
        if self._last_t is not None and self._last_t >= self._t0 + k * self.duration:
            next_data = min(next_data, math.floor((self._last_t - self._t0) / self.duration))
        for piece_start, data in self._pieces:
            if piece_start + len(data) > k * self.samples:
                next_data = min(next_data, max(k, piece_start // self.samples))
                break
        else:  # audio placed after a gap may still sit in the resampler: it starts no later than the audio end
            if self._audio_end is not None and self._audio_end > k * self.samples:
                next_data = min(next_data, self._audio_end // self.samples)
        if not math.isfinite(next_data) or next_data - k <= self.max_fill_snippets:
            return False
        self.stats.snippets_skipped += next_data - k
        self._next_k = next_data
        self._runs = [run for run in self._runs if run[0] > next_data * self.frames]
        self._next_slot = max(self._next_slot, next_data * self.frames)
        self._prune_pieces(next_data * self.samples)
        return True

    def _emit(self, k: int) -> Snippet:
        first, last = k * self.frames, (k + 1) * self.frames
        if self._next_slot < last:
            self._settle_slots(last, confirmed=False)
        video = np.zeros((self.frames, self.spec.height, self.spec.width, 3), dtype=np.uint8)
        video_filled = False
        begin = first
        for end, frame, filled in self._runs:
            lo, hi = max(begin, first), min(end, last)
            if hi > lo:
                if frame is not None:
                    video[lo - first : hi - first] = frame
                if filled:
                    video_filled = True
                    self.stats.video_slots_filled += hi - lo
            begin = end
            if end >= last:
                break
        self._runs = [run for run in self._runs if run[0] > last]

        lo, hi = k * self.samples, (k + 1) * self.samples
        audio = np.zeros(self.samples, dtype=np.float32)
        covered = 0
        for piece_start, data in self._pieces:
            a, b = max(lo, piece_start), min(hi, piece_start + len(data))
            if b > a:
                audio[a - lo : b - lo] = data[a - piece_start : b - piece_start]
                covered += b - a
        self._prune_pieces(hi)
        self.stats.audio_samples_filled += self.samples - covered
        self._next_k = k + 1
        self.stats.snippets_emitted += 1
        return Snippet(
            index=k,
            t0=self._t0 + k * self.duration,
            t1=self._t0 + (k + 1) * self.duration,
            video=video,
            audio=audio,
            video_filled=video_filled,
            audio_filled=covered < self.samples,
        )

    def _prune_pieces(self, floor: int) -> None:
        kept = []
        for start, data in self._pieces:
            if start + len(data) <= floor:
                continue
            if start < floor:
                data, start = data[floor - start :], floor
            kept.append([start, data])
        self._pieces = kept
