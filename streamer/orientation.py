"""Display rotation: phone videos stored sideways, turned upright for the networks, stored back as they came.

A phone filming in portrait usually stores landscape pictures plus a display
matrix telling the player to turn them a quarter turn. Decoders ignore it, so
without this module the detector and the generator would see every face lying
on its side: on the clips of ``../shared`` stored a quarter turn away,
CenterFace found 24 % of the faces it finds upright (427 of 1758,
``benchmarks/sideways_faces.py``, 2026-11-26). The source
turns each picture upright (:func:`upright`), the stages work as usual, and the
sink turns it back (:func:`stored`) and writes the input's display matrix, so
the output plays like the input and keeps its stored layout.

Only whole quarter turns are applied; mirroring in the matrix is copied to the
output untouched. A photo's EXIF orientation reaches us the same way (FFmpeg
turns it into a display matrix); an image output is written upright.

Example:
    >>> import numpy as np
    >>> picture = np.zeros((360, 640, 3), np.uint8)      # stored landscape
    >>> quarter_turns(-90)                               # the player turns it clockwise
    3
    >>> upright(picture, 3).shape
    (640, 360, 3)
    >>> stored(upright(picture, 3), 3).shape
    (360, 640, 3)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import av
import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Orientation:
    """How a player shows a video stream's pictures.

    Attributes:
        rotation: degrees counter-clockwise the player turns each stored
            picture (FFmpeg's display-matrix rotation, PyAV's ``VideoFrame.rotation``).
        matrix: the display matrix, nine integers in FFmpeg's
            ``AV_PKT_DATA_DISPLAYMATRIX`` layout, or None when the stream has
            none or it cannot be read (then ``rotation`` alone is written back).
    """

    rotation: int = 0
    matrix: tuple[int, ...] | None = None

    @property
    def turns(self) -> int:
        """Counter-clockwise quarter turns from a stored picture to an upright one (0-3)."""
        return quarter_turns(self.rotation)


def quarter_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns (0-3) that show a picture as a display rotation of
    ``rotation`` degrees counter-clockwise does; 0 for angles that are not whole quarter turns."""
    turns = round(rotation / 90)
    if abs(rotation - 90 * turns) > 1:
        return 0
    return turns % 4


def read_orientation(path: str) -> Orientation:
    """The display rotation and matrix of the first video stream of file ``path``.

    FFmpeg hands the matrix on with each decoded picture, not with the
    stream, so this decodes the first picture of a second opening of the
    file. Anything unreadable counts as no rotation: opening the file for
    real reports the error.
    """
    if "://" in path:  # network streams (cameras) are not reopened
        return Orientation()
    try:
        with av.open(path) as container:
            if not container.streams.video:
                return Orientation()
            for picture in container.decode(video=0):
                return _orientation_of(picture)
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        pass
    return Orientation()


def _orientation_of(picture: av.VideoFrame) -> Orientation:
    rotation = float(picture.rotation)  # 0 without a display matrix
    try:
        matrix = next((tuple(int(v) for v in np.frombuffer(bytes(side_data), np.int32)[:9])
                       for side_data in picture.side_data if side_data.type.name == "DISPLAYMATRIX"), None)
    except ValueError:  # PyAV 18 cannot list side data of a type it does not know (a JPEG's EXIF block)
        matrix = None
    if matrix is None and not rotation:
        return Orientation()
    if quarter_turns(rotation) == 0 and abs(rotation) > 1:
        log.warning("display rotation of %g degrees is not a quarter turn: pictures are processed as stored",
                    rotation)
    return Orientation(rotation=int(round(rotation)), matrix=matrix)


def upright(image, turns: int):
    """``image`` ((H, W, C) numpy array or torch tensor) turned ``turns`` quarter turns counter-clockwise,
    contiguous; the same object when ``turns`` is 0."""
    if not turns:
        return image
    if isinstance(image, np.ndarray):
        return np.ascontiguousarray(np.rot90(image, turns))
    return image.rot90(turns, (0, 1)).contiguous()


def stored(image, turns: int):
    """Undo :func:`upright`: an upright (H, W, C) picture turned back to how the stream stores it."""
    return upright(image, (-turns) % 4)
