"""A sink that encodes nothing: measures the pipeline without the encoder (benchmarks)."""

from __future__ import annotations

from streamer.detections import Frame


class NullSink:
    """Counts frames and packets and drops them.

    Attributes:
        frames_written: frames received.
        packets_copied: pass-through packets received.
    """

    def __init__(self) -> None:
        self.frames_written = 0
        self.packets_copied = 0

    def write_frame(self, frame: Frame) -> None:
        """Count one frame."""
        self.frames_written += 1

    def write_packet(self, packet) -> None:
        """Count one pass-through packet."""
        self.packets_copied += 1

    def close(self) -> None:
        """Nothing to finalize."""

    def discard(self) -> None:
        """Nothing to delete."""
