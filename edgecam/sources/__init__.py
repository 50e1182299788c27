"""Frame sources: cameras (picamera2, V4L2), network streams, video files, frame directories.

`open_source(spec)` (:mod:`edgecam.sources.open`) turns a `--source` value into a `Source`.
"""

from edgecam.sources.base import IMAGE_EXTENSIONS, ReconnectPolicy, Source, SourceBase
from edgecam.sources.live import LiveSource
from edgecam.sources.open import open_source, parse_spec
from edgecam.sources.platform import ALTERNATIVES, resolve_default_source

__all__ = [
    "ALTERNATIVES",
    "IMAGE_EXTENSIONS",
    "LiveSource",
    "ReconnectPolicy",
    "Source",
    "SourceBase",
    "open_source",
    "parse_spec",
    "resolve_default_source",
]
