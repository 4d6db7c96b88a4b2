"""Deinterlace decoded pictures (FFmpeg's bwdif), so faces are found whole and the output plays clean.

An interlaced recording (broadcast 1080i, PAL/NTSC DVRs, camcorders) holds
two fields per frame, taken 1/50 or 1/60 s apart: anything moving shows
comb teeth. Re-encoded as it was, the output is a progressive stream with the
combs baked in, which players no longer deinterlace; and the detector sees
faces torn in stripes. So the source deinterlaces with bwdif (one frame out
per frame in, the field order read by FFmpeg from each decoded picture): the
output keeps the frame rate and timestamps, and is progressive.

Example:
    >>> deinterlace = Deinterlacer()                    # doctest: +SKIP
    >>> frames = deinterlace(pictures_of_one_packet)   # doctest: +SKIP
    >>> frames += deinterlace.flush()                   # at the end of the stream  # doctest: +SKIP
"""

from __future__ import annotations

from fractions import Fraction

import av

#: FFmpeg filter and options: a frame per frame (not per field), only frames flagged interlaced.
FILTER = ("bwdif", "mode=send_frame:parity=auto:deint=interlaced")


class Deinterlacer:
    """Runs decoded pictures through bwdif once the first interlaced one is seen.

    Until then pictures pass unchanged; from then on every picture goes
    through the filter (it holds one picture back, so their order is kept),
    and :meth:`flush` returns the last ones at the end of the stream.

    Attributes:
        active: whether an interlaced picture was seen (pictures are being filtered).
    """

    def __init__(self) -> None:
        self._graph: av.filter.Graph | None = None
        self._shape: tuple | None = None  # (width, height, pixel format) the graph was built for
        self._time_base = None

    @property
    def active(self) -> bool:
        return self._graph is not None

    def __call__(self, pictures: list) -> list:
        """The progressive pictures available after ``pictures`` (decoded ``av.VideoFrame`` s, in order)."""
        out = []
        for picture in pictures:
            if self._graph is None and not (isinstance(picture, av.VideoFrame) and picture.interlaced_frame):
                out.append(picture)
                continue
            shape = (picture.width, picture.height, picture.format.name)
            if shape != self._shape:  # the first interlaced picture, or a size change mid-stream
                out.extend(self.flush())
                self._build(picture, shape)
            self._graph.push(picture)
            out.extend(self._pull())
        return out

    def flush(self) -> list:
        """The pictures the filter still holds (call at the end of the stream)."""
        if self._graph is None:
            return []
        self._graph.push(None)
        out = self._pull()
        self._graph, self._shape = None, None
        return out

    def _build(self, picture: av.VideoFrame, shape: tuple) -> None:
        width, height, pixel_format = shape
        graph = av.filter.Graph()
        self._time_base = picture.time_base or Fraction(1, 90000)
        source = graph.add_buffer(width=width, height=height, format=pixel_format, time_base=self._time_base)
        deinterlace = graph.add(*FILTER)
        sink = graph.add("buffersink")
        source.link_to(deinterlace)
        deinterlace.link_to(sink)
        graph.configure()
        self._graph, self._shape = graph, shape

    def _pull(self) -> list:
        out = []
        while True:
            try:
                picture = self._graph.pull()
            except (av.BlockingIOError, av.EOFError):
                return out
            # bwdif halves its output's time base (for its frame-per-field mode): back to the input's, which
            # the pictures' decode times (copied from their input) are still in
            if picture.pts is not None and picture.time_base and picture.time_base != self._time_base:
                picture.pts = round(picture.pts * picture.time_base / self._time_base)
            picture.time_base = self._time_base
            out.append(picture)
