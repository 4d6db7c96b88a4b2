"""The colour description of a video stream, kept from input to output.

A YUV video means nothing without its matrix (BT.601, BT.709, BT.2020...)
and range (limited "TV" 16-235 or full 0-255). The pipeline works in RGB, so
every YUV -> RGB conversion of a stream (PyAV on the CPU, NVDEC or the GPU
colour conversion) and the RGB -> YUV conversion of its output use the same
matrix and range, the input's, and the output is tagged with the input's
colour description. Unchanged pixels keep their YUV values (up to rounding)
and players show the output as they showed the input. A BT.709 clip decoded
as BT.709 but encoded with FFmpeg's default (BT.601) and left untagged moved
saturated colours by up to 19 levels of luma (``benchmarks/colour_shift.py``).

Example:
    >>> c = ColourInfo(space=1, range=1, primaries=1, trc=1)
    >>> c.matrix, c.full_range, c.sws_colorspace
    ('bt709', False, 'ITU709')
    >>> ColourInfo().matrix  # unspecified: BT.601, FFmpeg's default
    'bt601'
"""

from __future__ import annotations

from dataclasses import dataclass

#: AVCOL_SPC code -> (our matrix name, luma weights Kr and Kb, swscale's colorspace name).
_MATRICES = {
    1: ("bt709", 0.2126, 0.0722, "ITU709"),
    4: ("fcc", 0.30, 0.11, "FCC"),
    5: ("bt601", 0.299, 0.114, "ITU601"),
    6: ("bt601", 0.299, 0.114, "ITU601"),
    7: ("smpte240m", 0.212, 0.087, "SMPTE240M"),
    9: ("bt2020", 0.2627, 0.0593, "BT2020"),
    10: ("bt2020", 0.2627, 0.0593, "BT2020"),
}
#: Unspecified (2) and anything else: what FFmpeg's swscale assumes.
_DEFAULT = ("bt601", 0.299, 0.114, "ITU601")
#: AVCOL_RANGE_JPEG: full range.
_FULL_RANGE = 2


@dataclass(frozen=True)
class ColourInfo:
    """A stream's colour description, as FFmpeg codes it (``AVCOL_*`` numbers, 2 / 0 = unspecified).

    Attributes:
        space: matrix coefficients (AVColorSpace: 1 BT.709, 5/6 BT.601, 9 BT.2020, 2 unspecified).
        range: 1 limited (MPEG), 2 full (JPEG), 0 unspecified (limited).
        primaries: colour primaries (AVColorPrimaries), passed through as a tag.
        trc: transfer characteristic (AVColorTransferCharacteristic), passed through as a tag.
    """

    space: int = 2
    range: int = 0
    primaries: int = 2
    trc: int = 2

    @classmethod
    def of(cls, source) -> "ColourInfo":
        """Read it from a PyAV ``VideoFrame`` or ``VideoCodecContext`` (same attribute names); the
        JPEG pixel formats (``yuvj420p``...) are full range whatever their range tag says."""
        fmt = getattr(source, "pix_fmt", None) or getattr(getattr(source, "format", None), "name", None) or ""
        colour_range = int(source.color_range or 0)
        if not colour_range and fmt.startswith("yuvj"):
            colour_range = _FULL_RANGE
        return cls(space=int(source.colorspace or 2), range=colour_range,
                   primaries=int(source.color_primaries or 2), trc=int(source.color_trc or 2))

    @property
    def matrix(self) -> str:
        """Name of the YUV matrix: bt601, bt709, bt2020, fcc or smpte240m."""
        return _MATRICES.get(self.space, _DEFAULT)[0]

    @property
    def luma_weights(self) -> tuple[float, float]:
        """(Kr, Kb): the red and blue weights of luma in this matrix."""
        _, kr, kb, _ = _MATRICES.get(self.space, _DEFAULT)
        return kr, kb

    @property
    def full_range(self) -> bool:
        """True for full range (0-255), False for limited (16-235 luma, 16-240 chroma)."""
        return self.range == _FULL_RANGE

    @property
    def sws_colorspace(self) -> str:
        """The matrix as PyAV's ``reformat`` names it (``src_colorspace`` / ``dst_colorspace``)."""
        return _MATRICES.get(self.space, _DEFAULT)[3]

    @property
    def sws_range(self) -> str:
        """The range as PyAV's ``reformat`` names it (``src_color_range`` / ``dst_color_range``)."""
        return "JPEG" if self.full_range else "MPEG"

    def tag(self, target) -> None:
        """Write this description onto a PyAV ``VideoFrame`` or ``VideoCodecContext`` (output tags)."""
        target.colorspace = self.space
        target.color_range = self.range
        target.color_primaries = self.primaries
        target.color_trc = self.trc


def rgb_to_video_frame(image, colour: ColourInfo, pix_fmt: str):
    """An ``av.VideoFrame`` in ``pix_fmt`` from an (H, W, 3) uint8 RGB array, converted with the
    stream's matrix and range and tagged with its colour description (what encoders write)."""
    import av

    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    if pix_fmt != "rgb24":
        frame = frame.reformat(format=pix_fmt, dst_colorspace=colour.sws_colorspace, dst_color_range=colour.sws_range)
    colour.tag(frame)
    return frame


def video_frame_to_rgb(frame):
    """(H, W, 3) uint8 RGB of a decoded ``av.VideoFrame``, converted with the frame's own matrix and range
    (PyAV's plain ``to_ndarray(format="rgb24")`` ignores a full-range tag)."""
    colour = ColourInfo.of(frame)
    if frame.format.name == "rgb24":
        return frame.to_ndarray()
    return frame.reformat(format="rgb24", src_colorspace=colour.sws_colorspace,
                          src_color_range=colour.sws_range).to_ndarray()
