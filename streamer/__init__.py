"""streamer: real-time video face anonymizer.

Decode -> detect faces -> track -> anonymize -> encode, with audio and timing
kept. See README.md for the command line; the main library entry point is
:func:`streamer.pipeline.anonymize_file`.
"""

from streamer.detections import Detections, Frame

__all__ = ["Detections", "Frame", "__version__"]
__version__ = "0.1.0"
