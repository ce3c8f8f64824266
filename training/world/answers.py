"""The answer to every question kind, computed from the timeline and nothing after t_ask.

"Now" means the last frame shown before t_ask (frame j is shown at j / fps) and, for
sound, the last snippet before t_ask. "Heard" means the play started before t_ask.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from model.media import MediaSpec
from training.world.timeline import EPS, SoundEvent, Timeline, frames_before
from training.world.vocab import NOTHING, QUESTION_KINDS, SILENCE, SOUNDS, number_word


@dataclass(frozen=True)
class AnswerKey:
    """Answers questions about `timeline` as seen and heard by `t_ask` seconds."""

    timeline: Timeline
    spec: MediaSpec
    t_ask: float

    # -- what was observable -------------------------------------------------------------

    @cached_property
    def frames_seen(self) -> int:
        return frames_before(self.t_ask, self.spec.fps)

    def visible(self, index: int, frame: int) -> float:
        """Visible share of shape `index` in frame `frame`."""
        return self.timeline.shapes[index].visible_fraction(
            frame / self.spec.fps, self.timeline.width, self.timeline.height
        )

    @cached_property
    def on_screen(self) -> list[int]:
        """Shapes visible in the last frame before t_ask, in order of appearance."""
        if self.frames_seen == 0:
            return []
        last = self.frames_seen - 1
        return [i for i in range(len(self.timeline.shapes)) if self.visible(i, last) > 0]

    def first_seen_frame(self, index: int) -> int | None:
        """The first frame before t_ask that shows shape `index`, or None."""
        shape = self.timeline.shapes[index]
        first = max(0, frames_before(shape.t_start, self.spec.fps))
        last = min(self.frames_seen, frames_before(shape.t_end, self.spec.fps))
        for frame in range(first, last):
            if self.visible(index, frame) > 0:
                return frame
        return None

    @cached_property
    def first_frames(self) -> dict[int, int]:
        """Shape index -> first frame that shows it, for the shapes seen before t_ask."""
        firsts = {i: self.first_seen_frame(i) for i in range(len(self.timeline.shapes))}
        return {i: f for i, f in firsts.items() if f is not None}

    @cached_property
    def seen(self) -> list[int]:
        """Shapes shown at least once before t_ask, ordered by when they were first seen."""
        return sorted(self.first_frames, key=lambda i: (self.first_frames[i], i))

    @cached_property
    def heard(self) -> list[SoundEvent]:
        return [s for s in self.timeline.sounds if s.t_start < self.t_ask - EPS]

    def find_seen_shape(self, color: str, shape: str) -> int | None:
        for i in self.seen:
            event = self.timeline.shapes[i]
            if event.color == color and event.shape == shape:
                return i
        return None

    # -- one method per question kind ----------------------------------------------------

    def color_now(self, shape: str) -> str:
        matches = [i for i in self.on_screen if self.timeline.shapes[i].shape == shape]
        return self.timeline.shapes[matches[-1]].color if matches else NOTHING

    def shape_now(self) -> str:
        return " and ".join(self.timeline.shapes[i].shape for i in self.on_screen) or NOTHING

    def count_now(self) -> str:
        return number_word(len(self.on_screen))

    def direction(self, color: str, shape: str) -> str:
        index = self.find_seen_shape(color, shape)
        return NOTHING if index is None else self.timeline.shapes[index].direction

    def sound_now(self) -> str:
        window_start = max(0.0, self.t_ask - self.spec.snippet_seconds)
        playing = [s for s in self.heard if s.overlap(window_start, self.t_ask) > 0]
        return playing[-1].sound if playing else SILENCE

    def count_sound(self, sound: str) -> str:
        return number_word(sum(1 for s in self.heard if s.sound == sound))

    def first_shape(self) -> str:
        return self.timeline.shapes[self.seen[0]].shape if self.seen else NOTHING

    def first_color(self) -> str:
        return self.timeline.shapes[self.seen[0]].color if self.seen else NOTHING

    def first_time(self, name: str) -> float | None:
        """When a sound kind was first heard, or a shape ("red circle") first seen."""
        if name in SOUNDS:
            return next((s.t_start for s in self.heard if s.sound == name), None)
        color, _, shape = name.partition(" ")
        index = self.find_seen_shape(color, shape)
        if index is None:
            return None
        return self.first_frames[index] / self.spec.fps

    def order(self, a: str, b: str) -> str:
        ta, tb = self.first_time(a), self.first_time(b)
        if ta is None and tb is None:
            return NOTHING
        if tb is None or (ta is not None and ta <= tb):
            return a
        return b

    def sound_of(self, color: str, shape: str) -> str:
        index = self.find_seen_shape(color, shape)
        made = [s for s in self.heard if index is not None and s.owner == index]
        return made[0].sound if made else SILENCE

    def who_made(self, sound: str) -> str:
        plays = [s for s in self.heard if s.sound == sound]
        if not plays or plays[0].owner is None:
            return NOTHING
        return self.timeline.shapes[plays[0].owner].name

    def describe(self) -> str:
        parts = []
        for i in self.on_screen:
            shape = self.timeline.shapes[i]
            motion = "standing still" if shape.direction == "still" else f"moving {shape.direction}"
            parts.append(f"{shape.name} {motion}")
        return " and ".join(parts) or NOTHING

    def answer(self, kind: str, **subject: str) -> str:
        """Dispatch by question kind: `key.answer("direction", color="red", shape="circle")`."""
        method = getattr(self, kind, None)
        if kind not in QUESTION_KINDS or method is None:
            raise ValueError(f"unknown question kind {kind!r}; choose one of {QUESTION_KINDS}")
        return method(**subject)

