"""The chunker's saved state read back, every field checked before the chunker takes any of it.

A state comes back from a session file, whose checksum only proves the bytes are the ones
written. A wrong type or an absurd value must be refused on load with a message that names the
field (a Session reports it as a StateError), not fail on the next push with a TypeError or
make the chunker emit or fill gigabytes. Besides types and ranges, the fields must agree as
`Chunker.state_dict` writes them: video runs and audio pieces in order from the next snippet,
a resampler whose counts agree, and positions no further past the data held than a stream
could have run. Only the loading chunker's own settings bound the latter, so a state saved
with a much longer `max_lag` or `max_jump` may be refused by a chunker with the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np

from model.media import MediaSpec
from streamer.audio import StreamingResampler
from streamer.state_fields import MAX_INT, StateFields, join

class ChunkerSettings(Protocol):
    """What the checks need of the loading chunker (a `Chunker`): its spec and its settings.
    A protocol, not the class, so this module never imports the chunker that imports it."""

    spec: MediaSpec
    frames: int
    samples: int
    duration: float
    max_lag: float
    max_jump: float
    resize: bool
    video_tolerance: float


STATE_VERSION = 1
JUMP_CONFIRMATIONS = 3  # consecutive far-ahead stamps on a modality that prove a real clock jump
# saved stamps further from zero (about 9 million years) are damage: no real clock gets there,
# and grid positions from them would leave the int64 the state is saved as
MAX_SECONDS = 2.0**48


@dataclass
class ChunkerStats:
    """What the chunker did with its input; counters only grow.

    Audio sample counts are at the output rate (16 kHz) unless named `_in`.
    """

    snippets_emitted: int = 0
    snippets_skipped: int = 0  # empty snippets jumped over after a long silence in both modalities
    video_frames_accepted: int = 0
    video_frames_late: int = 0  # older than a frame already seen
    video_frames_duplicate: int = 0  # same stamp as the previous frame
    video_frames_before_start: int = 0  # more than one snippet before t0
    video_slots_filled: int = 0  # output frames synthesised (repeat of the last frame, or black)
    audio_blocks_accepted: int = 0
    audio_samples_late: int = 0  # landed in a snippet already emitted
    audio_samples_before_start: int = 0  # before t0
    audio_samples_trimmed: int = 0  # overlapped audio already placed
    audio_samples_invalid_in: int = 0  # NaN/inf sample values, replaced by 0
    audio_gaps_filled: int = 0  # stamp ahead of the sample count by more than the tolerance
    audio_samples_filled: int = 0  # silence synthesised in emitted snippets
    audio_rate_changes: int = 0
    stamps_invalid: int = 0  # NaN or infinite timestamps (item dropped)
    stamps_jumped: int = 0  # items dropped because their stamp leapt far ahead, unconfirmed
    clock_jumps: int = 0  # far jumps confirmed by following stamps and accepted
    sources_rebased: int = 0  # new sources whose clock was moved to continue the stream (`start_source`)


@dataclass
class Segment:
    """Audio placed without a break since a gap or a rate change: its first stamp, the input
    samples fed since, and the resampler that carries the filter's history across blocks."""

    t: float
    inputs: int
    resampler: StreamingResampler

    @property
    def next_t(self) -> float:
        """Where the next block should be stamped if it follows on without a gap."""
        return self.t + self.inputs / self.resampler.rate_in

    def state_dict(self) -> dict:
        return {"t": self.t, "inputs": self.inputs, "resampler": self.resampler.state_dict()}

    @classmethod
    def from_state_dict(cls, state: object, read: StateFields, path: str) -> Segment:
        # states saved before this class existed also hold an "origin" that nothing reads
        read.record(state, path)
        t = read.number(read.key(state, "t", path), join(path, "t"), MAX_SECONDS)
        raw_resampler = read.key(state, "resampler", path)
        resampler = StreamingResampler.from_state_dict(raw_resampler, read, join(path, "resampler"))
        inputs = read.integer(read.key(state, "inputs", path), join(path, "inputs"), 0, MAX_INT)
        if inputs != resampler.inputs:
            raise read.error(join(path, "inputs"), f"is {inputs}, but its resampler was fed {resampler.inputs}")
        return cls(t, inputs, resampler)


@dataclass
class ChunkerState:
    """What `Chunker.load_state_dict` restores, checked (the chunker's private fields by name)."""

    stats: ChunkerStats
    t0: float | None
    next_k: int
    newest: float | None
    suspects: dict[str, list[float]]
    runs: list[list]  # [end_slot, frame or None, filled]
    next_slot: int
    last_t: float | None
    last_raw: np.ndarray | None
    pieces: list[list]  # [start_sample, float32 samples]
    audio_end: int | None
    segment: Segment | None
    offset: float
    new_source: bool


def read_chunker_state(state: object, chunker: ChunkerSettings) -> ChunkerState:
    """`state` as `chunker` (its spec and settings) may take it; a ValueError naming the field if not."""
    read = StateFields("chunker state")
    version = state.get("version") if isinstance(state, dict) else None
    if isinstance(version, bool) or version != STATE_VERSION:
        raise ValueError(f"not a chunker state of version {STATE_VERSION}")
    spec = chunker.spec
    mine = [spec.height, spec.width, spec.fps, chunker.frames, spec.sample_rate]
    saved_spec = read.key(state, "spec")
    if not isinstance(saved_spec, (list, tuple)) or list(saved_spec) != mine:
        shown = list(saved_spec) if isinstance(saved_spec, (list, tuple)) else saved_spec
        raise ValueError(f"chunker state was saved for media spec {shown!r}, this chunker has {mine}")
    audio_end, segment = read.key(state, "audio_end"), read.key(state, "segment")
    loaded = ChunkerState(
        stats=_read_stats(read, read.key(state, "stats")),
        t0=read.optional_number(read.key(state, "t0"), "t0", MAX_SECONDS),
        next_k=read.integer(read.key(state, "next_k"), "next_k"),
        newest=read.optional_number(read.key(state, "newest"), "newest", MAX_SECONDS),
        suspects=_read_suspects(read, read.key(state, "suspects")),
        runs=_read_runs(read, read.key(state, "runs"), chunker),
        next_slot=read.integer(read.key(state, "next_slot"), "next_slot"),
        last_t=read.optional_number(read.key(state, "last_t"), "last_t", MAX_SECONDS),
        last_raw=_read_last_raw(read, read.key(state, "last_raw"), chunker),
        pieces=_read_pieces(read, read.key(state, "pieces")),
        audio_end=None if audio_end is None else read.integer(audio_end, "audio_end", -MAX_INT, MAX_INT),
        segment=None if segment is None else Segment.from_state_dict(segment, read, "segment"),
        # states saved before sources were rebased have neither
        offset=read.number(state.get("offset", 0.0), "offset", MAX_SECONDS),
        new_source=read.flag(state.get("new_source", False), "new_source"),
    )
    if loaded.segment is not None and loaded.segment.resampler.rate_out != spec.sample_rate:
        raise read.error("segment.resampler.rate_out", f"must be the spec's {spec.sample_rate} Hz")
    _check_consistent(read, loaded, chunker)
    return loaded


def _read_stats(read: StateFields, raw: object) -> ChunkerStats:
    read.record(raw, "stats")
    unknown = set(raw) - {f.name for f in fields(ChunkerStats)}
    if unknown:
        raise ValueError(f"chunker state has unknown counters {sorted(map(str, unknown))}")
    # counters added since a state was saved start at 0
    return ChunkerStats(**{name: read.integer(value, join("stats", name)) for name, value in raw.items()})


def _read_suspects(read: StateFields, raw: object) -> dict[str, list[float]]:
    read.record(raw, "suspects")
    if set(raw) != {"video", "audio"}:
        raise read.error("suspects", f"must hold 'video' and 'audio', got {sorted(map(str, raw))}")
    suspects = {}
    for name in ("video", "audio"):
        path = join("suspects", name)
        stamps = read.items(raw[name], path)
        if len(stamps) >= JUMP_CONFIRMATIONS:  # that many would have confirmed the jump
            raise read.error(path, f"holds {len(stamps)} stamps, at most {JUMP_CONFIRMATIONS - 1}")
        suspects[name] = [read.number(t, join(path, i), MAX_SECONDS) for i, t in enumerate(stamps)]
    return suspects


def _read_runs(read: StateFields, raw: object, chunker: ChunkerSettings) -> list[list]:
    shape = (chunker.spec.height, chunker.spec.width, 3)
    runs = []
    for i, run in enumerate(read.items(raw, "runs")):
        path = join("runs", i)
        end, frame, filled = read.items(run, path, 3)
        if frame is not None:
            frame = read.array(frame, join(path, 1), np.uint8, 3)
            if frame.shape != shape:
                raise read.error(join(path, 1), f"is a frame of shape {list(frame.shape)}, "
                                 f"not the spec's {list(shape)}")
        runs.append([read.integer(end, join(path, 0)), frame, read.flag(filled, join(path, 2))])
    return runs


def _read_last_raw(read: StateFields, raw: object, chunker: ChunkerSettings) -> np.ndarray | None:
    if raw is None:
        return None
    frame = read.array(raw, "last_raw", np.uint8, 3)
    if frame.shape[0] == 0 or frame.shape[1] == 0 or frame.shape[2] != 3:
        raise read.error("last_raw", f"must be an RGB frame [H, W, 3], got shape {list(frame.shape)}")
    spec = chunker.spec
    if not chunker.resize and frame.shape[:2] != (spec.height, spec.width):
        raise read.error("last_raw", f"is {frame.shape[1]}x{frame.shape[0]}, but this chunker does not resize "
                         f"to the spec's {spec.width}x{spec.height}")
    return frame


def _read_pieces(read: StateFields, raw: object) -> list[list]:
    pieces = []
    for i, piece in enumerate(read.items(raw, "pieces")):
        path = join("pieces", i)
        start, data = read.items(piece, path, 2)
        data = read.array(data, join(path, 1), np.float32, 1)
        if len(data) == 0:
            raise read.error(join(path, 1), "holds no samples")
        pieces.append([read.integer(start, join(path, 0)), data])
    return pieces


def _check_consistent(read: StateFields, state: ChunkerState, chunker: ChunkerSettings) -> None:
    """Fields that agree with each other as `state_dict` writes them, and positions no further
    past the data held than the stream could have run (else the next call emits without end)."""
    t0, newest, last_t, segment, audio_end = state.t0, state.newest, state.last_t, state.segment, state.audio_end
    if newest is None:  # no stamp accepted yet: nothing can be held
        held = {"next_k": state.next_k != 0, "next_slot": state.next_slot != 0, "runs": state.runs,
                "last_t": last_t is not None, "pieces": state.pieces, "audio_end": audio_end is not None,
                "segment": segment is not None, "suspects": any(state.suspects.values())}
        if any(held.values()):
            raise read.error("newest", f"is not set (nothing accepted yet), but "
                             f"{', '.join(name for name, value in held.items() if value)} hold data")
        return
    if t0 is None:
        raise read.error("t0", "is not set, but stamps were accepted (newest is set)")
    if (last_t is None) != (state.last_raw is None):
        raise read.error("last_raw", "must be set exactly when last_t is")
    if last_t is not None and last_t > newest:
        raise read.error("last_t", f"is {last_t} s, after the newest stamp accepted ({newest} s)")
    if audio_end is None and (segment is not None or state.pieces):
        raise read.error("audio_end", "is not set, but audio is held (segment or pieces)")
    _check_video(read, state, chunker)
    _check_audio(read, state, chunker)

    # the data held ends near the newest stamp, and the snippets emitted end before it
    rate, duration = chunker.spec.sample_rate, chunker.duration
    ends = [end for end in (last_t, None if audio_end is None else t0 + audio_end / rate,
                            None if segment is None else segment.next_t) if end is not None]
    if not ends:
        raise read.error("newest", "is set, but no data was ever held (last_t and audio_end are not set)")
    data_end = max(ends)
    if newest > data_end + chunker.max_jump + duration:
        raise read.error("newest", f"is {newest} s, more than max_jump ({chunker.max_jump} s) "
                         f"past the data held, which ends at {data_end} s")
    if state.next_k * duration > max(newest, data_end) - t0 + 2 * duration:
        raise read.error("next_k", f"is snippet {state.next_k} (from {t0 + state.next_k * duration} s), "
                         f"past the data held, which ends at {max(newest, data_end)} s")


def _check_video(read: StateFields, state: ChunkerState, chunker: ChunkerSettings) -> None:
    """Runs of slots in order from the next snippet's first slot to next_slot, none showing one
    real frame for longer than max_lag, and no slot settled past the newest stamp."""
    fps = chunker.spec.fps
    begin = state.next_k * chunker.frames
    longest_shown = (max(chunker.max_lag, 0.0) + 2 * abs(chunker.video_tolerance)) * fps + 3
    for i, (end, frame, filled) in enumerate(state.runs):
        path = join("runs", i)
        if end <= begin:
            raise read.error(join(path, 0), f"is slot {end}, not after slot {begin} where "
                             f"{'the run before ends' if i else 'the next snippet (next_k) begins'}")
        if frame is None and not filled:
            raise read.error(join(path, 2), "is false, but the run has no frame to show")
        if not filled and end - begin > longest_shown:
            raise read.error(path, f"shows one real frame for {end - begin} slots, "
                             f"more than max_lag allows ({longest_shown:.0f})")
        begin = end
    if state.next_slot != begin:
        raise read.error("next_slot", f"is {state.next_slot}, but the video runs end at slot {begin}")
    newest_slot = (state.newest - state.t0) * fps
    if state.next_slot > state.next_k * chunker.frames and state.next_slot > newest_slot + chunker.frames + 1:
        raise read.error("next_slot", f"is {state.next_slot}, past the newest stamp's slot {newest_slot:.0f}")


def _check_audio(read: StateFields, state: ChunkerState, chunker: ChunkerSettings) -> None:
    """Pieces in order from the next snippet's first sample to audio_end, which runs past the
    newest stamp by the samples held at most, and a segment placed where its stamp says."""
    rate, audio_end = chunker.spec.sample_rate, state.audio_end
    begin = state.next_k * chunker.samples
    for i, (start, data) in enumerate(state.pieces):
        if start < begin:
            raise read.error(join(join("pieces", i), 0), f"is sample {start}, before sample {begin} "
                             f"where {'the piece before ends' if i else 'the next snippet (next_k) begins'}")
        begin = start + len(data)
    if state.pieces and begin > audio_end:
        raise read.error("audio_end", f"is sample {audio_end}, before the audio pieces end ({begin})")
    held = sum(len(data) for _, data in state.pieces)
    newest_sample = (state.newest - state.t0) * rate
    furthest = max(state.next_k * chunker.samples, newest_sample) + held + chunker.samples
    if audio_end is not None and audio_end > furthest:
        raise read.error("audio_end", f"is sample {audio_end}, past the newest stamp's sample "
                         f"{newest_sample:.0f} by more than the {held} samples held")
    segment = state.segment
    if segment is not None:  # placed by count from where its first stamp put it (drifting by jitter only)
        origin = state.t0 + (audio_end - segment.resampler.outputs) / rate
        if abs(segment.t - origin) > chunker.max_jump + chunker.duration:
            raise read.error("segment.t", f"is {segment.t} s, but its samples were placed from {origin} s")
