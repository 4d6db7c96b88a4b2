"""Presentation timestamps the encoder can take: repaired where the input's are faulty.

Some containers carry no real presentation timestamps: AVI stores decode
order only, so an H.264 stream with B-frames decodes to frames labelled
2, 6, 8, 10, 12, 4, ... An encoder refuses such non-increasing timestamps.
:class:`TimestampRepair` applies FFmpeg's ``guess_correct_pts`` rule (count
how often pts and dts each went backwards and trust the one that did less
often) and then guarantees a strictly increasing sequence.

Example:
    >>> fix = TimestampRepair(ticks_per_frame=2)
    >>> [fix(pts, dts) for pts, dts in [(2, 2), (6, 4), (8, 6), (10, 8), (4, 10), (14, 12)]]
    [2, 6, 8, 10, 12, 14]
    >>> fix.repaired
    1
    >>> avi = TimestampRepair(ticks_per_frame=2, decode_order=True)
    >>> [avi(pts, dts) for pts, dts in [(2, 2), (6, 4), (8, 6), (10, 8), (4, 10), (14, 12)]]
    [2, 4, 6, 8, 10, 12]
"""

from __future__ import annotations


class TimestampRepair:
    """Turns (pts, dts) pairs of decoded frames, in output order, into increasing pts.

    Args:
        ticks_per_frame: nominal frame duration in time-base ticks, used when
            a timestamp is missing or must be pushed forward.
        decode_order: the container stores decode times only (AVI), so the
            pts are guesses from the start: use the dts whenever there is one.
            (Counting errors first trusts the guessed pts until one goes back,
            which leaves a gap of a frame after the first frame.)

    Attributes:
        repaired: how many frames did not keep their own pts.
    """

    def __init__(self, ticks_per_frame: int, decode_order: bool = False) -> None:
        self.ticks_per_frame = max(1, int(ticks_per_frame))
        self.decode_order = decode_order
        self._lead: int | None = None  # ticks taken off decode times (decode_order)
        self._faulty_pts = 0
        self._faulty_dts = 0
        self._last_pts: int | None = None
        self._last_dts: int | None = None
        self._last_out: int | None = None
        self.repaired = 0

    def __call__(self, pts: int | None, dts: int | None) -> int:
        """Return the timestamp to use for this frame, in time-base ticks."""
        if dts is not None:
            self._faulty_dts += self._last_dts is not None and dts <= self._last_dts
            self._last_dts = dts
        if pts is not None:
            self._faulty_pts += self._last_pts is not None and pts <= self._last_pts
            self._last_pts = pts
        if self.decode_order:
            if self._lead is None and dts is not None:
                # the first picture comes out after as many packets as the decoder reorders (B-frames):
                # its decode time is that much later than FFmpeg's guess of its presentation time
                self._lead = max(0, dts - pts) if pts is not None else 0
            # None (the decoder's last frames): a frame after the one before
            guess = None if dts is None else dts - (self._lead or 0)
        elif pts is not None and (self._faulty_pts <= self._faulty_dts or dts is None):
            guess = pts
        else:
            guess = dts
        if guess is None or (self._last_out is not None and guess <= self._last_out):
            guess = 0 if self._last_out is None else self._last_out + self.ticks_per_frame
        if guess != pts:
            self.repaired += 1
        self._last_out = guess
        return guess
