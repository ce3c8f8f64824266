"""The streamer model: configs and presets, tokenizer, encoders, combiners, latent model,
text decoder, and `StreamerModel` with `forward` (training) and `step`/`answer` (streaming)."""

from model.config import PRESET_NAMES, ModelConfig
from model.media import MEDIA_PRESETS, MediaSpec
from model.streamer_model import ModelOutput, StreamerModel
from model.tokenizer import Tokenizer

__all__ = ["MEDIA_PRESETS", "PRESET_NAMES", "MediaSpec", "ModelConfig", "ModelOutput", "StreamerModel", "Tokenizer"]
