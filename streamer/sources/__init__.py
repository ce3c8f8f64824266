"""Media sources: files, capture devices, the microphone, numpy arrays.

A source is an iterable of `VideoFrame | AudioBlock` in its own clock order, stamped in
seconds on its own clock (PTS × time_base). Every source has `close()`, works as a
context manager, and says `is_live`: a live source keeps running whether or not anyone
reads it, so the engine may drop from it when it falls behind; a file waits for its reader.
The synthetic world is not a source of its own: a world clip streams as `Arrays`
(`clip.source()`), since the runtime must not depend on the training package.
"""

from streamer.sources.arrays import Arrays
from streamer.sources.base import MissingTrackWarning, Source, SourceError
from streamer.sources.decoded import Camera, File
from streamer.sources.microphone import Microphone

__all__ = ["Arrays", "Camera", "File", "Microphone", "MissingTrackWarning", "Source", "SourceError"]
