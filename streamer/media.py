"""The media types of the runtime's seams (source → chunker → engine), under the name users
of `streamer` import them by. They are defined once, with the model's media contract, in
`model.media` (ARCHITECTURE.md, "Layers": the model may not import the runtime)."""

from model.media import AudioBlock, MediaItem, MediaSpec, Snippet, VideoFrame

__all__ = ["AudioBlock", "MediaItem", "MediaSpec", "Snippet", "VideoFrame"]
