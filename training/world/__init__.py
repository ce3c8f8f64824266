"""The shapes-and-sounds world (WORLD.md): timelines, rendering, questions, media files."""

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
