"""The Engine: one loaded model serving any number of streams, stepped together in batches."""

from __future__ import annotations

import os
import weakref
from pathlib import Path

import torch

from model import StreamerModel
from model.checkpoint import CONFIG
from model.media import MediaSpec
from streamer.scheduler import Scheduler
from streamer.session import Session
from streamer.state_io import decode_session, load_session_file
from streamer.watch import DEFAULT_INDEX_HOURS, SnippetScores, WatchTable

BUNDLED_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "tiny"


class CheckpointNotFound(FileNotFoundError):
    """No checkpoint where one was expected (the bundled one is produced by `streamer train`)."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device` checked against this machine (ValueError that says what there is); None: cuda when available."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r}: no CUDA GPU is available on this machine; use cpu")
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: Apple's MPS is not available on this machine; use cpu")
    elif resolved.type not in ("cpu", "mps"):
        raise ValueError(f"device {device!r}: streamer runs on cpu, cuda or mps")
    return resolved


class Engine:
    """Owns the model and the scheduler thread that steps all active sessions in one batch.

    >>> engine = Engine.load()                 # the bundled tiny checkpoint
    >>> session = engine.session()
    """

    def __init__(self, model: StreamerModel, *, max_batch: int | None = None, max_queued: int = 4) -> None:
        model.eval()
        self.model = model
        self.device = next(model.parameters()).device
        self.media: MediaSpec = model.cfg.media
        self.fingerprint: str = model.fingerprint()
        self.max_queued = max_queued
        self._state_spec = model.state_spec(1)
        # standing queries and the moment index need an alignment head; without one, no step pays for them
        self.watches: WatchTable | None = WatchTable(model.cfg.align.dim, self.device) if model.can_align else None
        self._scheduler = Scheduler(model.step, self.device, max_batch=max_batch,
                                    after_step=self._score_watches if model.can_align else None)
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        # Also runs at interpreter exit for an engine nobody closed: a thread still inside torch
        # or ffmpeg while the process tears down aborts it ("terminate called ...").
        self._shutdown = weakref.finalize(self, _shut_down, self._sessions, self._scheduler)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        *,
        device: str | torch.device | None = None,
        max_batch: int | None = None,
        max_queued: int = 4,
    ) -> Engine:
        """Load a checkpoint folder (default: the bundled `tiny` model) onto `device`; a device this
        machine does not have is refused with a ValueError."""
        folder = Path(path) if path is not None else BUNDLED_CHECKPOINT
        if not (folder / CONFIG).is_file():
            if path is None:
                raise CheckpointNotFound(
                    f"the bundled checkpoint is missing ({folder} has no {CONFIG}); train it with "
                    f"`make model` (`streamer recipe --out runs/tiny`, about 2.5 h on 2 CPU cores) and copy "
                    f"runs/tiny/model to {folder}, or pass a checkpoint folder: Engine.load(path) / --checkpoint PATH"
                )
            raise CheckpointNotFound(f"{folder} is not a checkpoint folder (no {CONFIG}); pass the folder `streamer train` wrote")
        model = StreamerModel.load(folder, device=resolve_device(device))
        return cls(model, max_batch=max_batch, max_queued=max_queued)

    def session(self, *, max_queued: int | None = None, index_hours: float = DEFAULT_INDEX_HOURS) -> Session:
        """A new stream with an empty state. `max_queued`: snippets buffered before a live stream drops;
        `index_hours`: stream hours its moment index keeps for `session.search` (models that align)."""
        return self._attach(Session(self, max_queued=max_queued or self.max_queued, index_hours=index_hours))

    def load_session(self, path: str | os.PathLike, *, max_queued: int | None = None,
                     index_hours: float | None = None) -> Session:
        """Resume a stream saved with `session.save(path)`, with its watches and moment index
        (`index_hours` None: as long as it was); refuses state from another model (StateError)."""
        saved = load_session_file(path, fingerprint=self.fingerprint, spec=self._state_spec, media=self.media,
                                  align_dim=self.model.cfg.align.dim)
        return self._attach(Session(self, max_queued=max_queued or self.max_queued, saved=saved,
                                    index_hours=index_hours))

    def restore_session(self, data: bytes, *, max_queued: int | None = None,
                        index_hours: float | None = None) -> Session:
        """`load_session` from the bytes of `session.to_bytes()`, for state that travels rather than
        sits in a file (a cluster moving a session between workers)."""
        saved = decode_session(data, fingerprint=self.fingerprint, spec=self._state_spec, media=self.media,
                               align_dim=self.model.cfg.align.dim)
        return self._attach(Session(self, max_queued=max_queued or self.max_queued, saved=saved,
                                    index_hours=index_hours))

    def _score_watches(self, sessions: list, state) -> list[SnippetScores]:
        """After each batched step (scheduler thread): the snippets' vectors, and every watch of
        every session scored against them in one matrix product."""
        return self.watches.score(sessions, self.model.embed_snippet(state))

    def _attach(self, session: Session) -> Session:
        self._sessions.add(session)  # before the scheduler takes it: a close() racing this either sees it or refuses it
        try:
            self._scheduler.add(session)
        except RuntimeError:
            self._sessions.discard(session)
            raise
        return session

    # the session's host: see streamer.session.Host
    def wake(self) -> None:
        """Tell the scheduler thread a session may have a snippet ready."""
        self._scheduler.wake()

    def detach(self, session: Session) -> None:
        """Stop stepping `session` (called by `session.close()`)."""
        self._scheduler.remove(session)
        self._sessions.discard(session)
        if self.watches is not None:
            self.watches.drop(session)

    @property
    def stats(self) -> dict[str, float]:
        """Steps taken, snippets stepped, mean batch size and seconds spent stepping."""
        s = self._scheduler
        return {"steps": s.steps, "snippets": s.snippets, "mean_batch": s.mean_batch, "busy_s": s.busy_s}

    def close(self) -> None:
        """Stop the scheduler thread and close every session: their streams end, their reader threads are joined."""
        self._shutdown()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shut_down(sessions: weakref.WeakSet[Session], scheduler: Scheduler) -> None:
    scheduler.close()  # first, so no session joins after the others were closed
    for session in list(sessions):
        session.close()
