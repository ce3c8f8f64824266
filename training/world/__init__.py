"""The shapes-and-sounds world: timelines, rendering, questions, media files.

Its rules are in training/world/README.md."""

from training.world.answers import AnswerKey
from training.world.clip import SPLITS, Clip, World, WorldConfig
from training.world.questions import Question
from training.world.timeline import ShapeEvent, SoundEvent, Timeline

__all__ = [
    "SPLITS",
    "AnswerKey",
    "Clip",
    "Question",
    "ShapeEvent",
    "SoundEvent",
    "Timeline",
    "World",
    "WorldConfig",
]
