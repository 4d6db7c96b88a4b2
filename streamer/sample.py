"""A built-in sample clip: a real face that moves and zooms, with an audio track.

The face is scikit-image's public-domain ``astronaut`` photograph (Eileen
Collins, NASA), installed with the project's dependencies, so the demo and
the tests need no downloaded data. The generator returns the ground-truth
face box of every frame.

Example:
    >>> clip = make_sample_clip("/tmp/sample.mp4", seconds=1.0)   # doctest: +SKIP
    >>> len(clip.face_boxes)                                        # doctest: +SKIP
    25
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

from streamer.orientation import quarter_turns, stored

#: The face in skimage's astronaut image (x1, y1, x2, y2), pixels: CenterFace's box.
ASTRONAUT_FACE_BOX = np.array([181.5, 58.2, 269.9, 177.8], np.float32)
#: The part of the astronaut image pasted into the clip (x1, y1, x2, y2): head and shoulders.
_SPRITE_BOX = (120, 10, 330, 260)


@dataclass
class SampleClip:
    """A generated clip and its ground truth.

    Attributes:
        path: the file written.
        face_boxes: per frame, (N, 4) face boxes in pixels.
        pts: per frame, the presentation timestamp in ``time_base`` units.
        time_base: seconds per pts tick.
        fps: nominal frame rate.
        audio_seconds: duration of the audio track (0 if none).
    """

    path: str
    face_boxes: list[np.ndarray]
    pts: list[int]
    time_base: Fraction
    fps: float
    audio_seconds: float


def _background(width: int, height: int) -> np.ndarray:
    """A face-free textured background (smooth gradients plus fixed noise)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(7)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 9) * 40
    r = 90 + 60 * np.sin(x / width * 3.0) + noise
    g = 110 + 50 * np.cos(y / height * 2.5) + noise
    b = 130 + 40 * np.sin((x + y) / (width + height) * 4.0)
    return np.clip(np.stack([r, g, b], axis=2), 0, 255).astype(np.uint8)


def _sprite() -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    image = data.astronaut()
    x1, y1, x2, y2 = _SPRITE_BOX
    face = ASTRONAUT_FACE_BOX - np.array([x1, y1, x1, y1], np.float32)
    return np.ascontiguousarray(image[y1:y2, x1:x2]), face


#: Shortest motion cycle of the sample clip (seconds): short clips show part of the cycle.
MIN_CYCLE_SECONDS = 3.0


def render_sample_frame(background: np.ndarray, sprite: np.ndarray, sprite_face: np.ndarray,
                        t: float, faces: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``faces`` moving, zooming copies of the sprite at time ``t`` (0..1 of the clip).

    Returns the RGB frame and the (faces, 4) ground-truth face boxes in pixels.
    """
    frame = background.copy()
    height, width = frame.shape[:2]
    boxes = []
    for k in range(faces):
        phase = t + k / max(faces, 1)
        scale = 0.55 + 0.45 * (0.5 + 0.5 * math.sin(2 * math.pi * phase)) * (height / 720)
        sw, sh = int(sprite.shape[1] * scale), int(sprite.shape[0] * scale)
        cx = width * (0.2 + 0.6 * ((phase * 0.9) % 1.0)) if faces > 1 else width * (0.25 + 0.5 * t)
        cy = height * (0.45 + 0.1 * math.sin(2 * math.pi * phase * 1.3))
        x0 = int(np.clip(cx - sw / 2, 0, width - sw))
        y0 = int(np.clip(cy - sh / 2, 0, height - sh))
        frame[y0:y0 + sh, x0:x0 + sw] = cv2.resize(sprite, (sw, sh), interpolation=cv2.INTER_AREA)
        boxes.append(sprite_face * scale + np.array([x0, y0, x0, y0], np.float32))
    return frame, np.array(boxes, np.float32).reshape(-1, 4)


def make_sample_clip(path: str, seconds: float = 3.0, fps: int = 25, width: int = 1280, height: int = 720,
                     faces: int = 1, audio: bool = True, codec: str = "libx264",
                     frame_durations: list[int] | None = None, audio_first: bool = False,
                     container_options: dict | None = None, rotation: int = 0,
                     gop: int | None = None) -> SampleClip:
    """Write a clip of moving faces (H.264 by default) with an AAC tone, and return its ground truth.

    Args:
        path: output file (container from the extension).
        seconds: clip length in seconds.
        fps: nominal frame rate (frames per second).
        width, height: frame size in pixels.
        faces: number of faces on screen.
        audio: add a 440 Hz stereo AAC track as long as the video.
        codec: video encoder.
        frame_durations: per-frame durations in ticks of 1/(fps*100) s for
            variable-frame-rate clips (None: constant rate).
        audio_first: make the audio track stream 0 (video becomes stream 1).
        container_options: muxer options, e.g. ``{"movflags": "faststart"}``.
        rotation: display rotation in degrees counter-clockwise, a multiple of 90
            (-90: a phone filming in portrait): ``width`` x ``height`` is the
            picture players show, stored turned the other way with a display
            matrix; ``face_boxes`` are in the upright picture's pixels.
        gop: frames between keyframes (None: the encoder's default, 250 for x264).
    """
    n_frames = int(round(seconds * fps))
    # motion speed in frames: one cycle per clip, but never faster than one per MIN_CYCLE_SECONDS
    # (a 0.5 s clip would otherwise move faces a fifth of the frame per frame, which no tracker follows)
    span = max(n_frames - 1, int(round(fps * MIN_CYCLE_SECONDS)), 1)
    background = _background(width, height)
    sprite, sprite_face = _sprite()
    time_base = Fraction(1, fps * 100)
    boxes, pts_list = [], []
    with av.open(path, mode="w", options=container_options or {}) as container:
        astream = None
        if audio and audio_first:
            astream = container.add_stream("aac", rate=44100, layout="stereo")
        turns = quarter_turns(rotation)
        video = _add_video_stream(container, codec, fps, width, height, rotation)
        video.time_base = time_base
        video.codec_context.time_base = time_base
        if codec == "libx264":
            video.options = {"crf": "18", "preset": "veryfast"}
        if gop:
            video.codec_context.gop_size = gop
        if audio and not audio_first:
            astream = container.add_stream("aac", rate=44100, layout="stereo")
        pts = 0
        for i in range(n_frames):
            frame, gt = render_sample_frame(background, sprite, sprite_face, i / span, faces)
            vf = av.VideoFrame.from_ndarray(stored(frame, turns), format="rgb24")
            vf.pts, vf.time_base = pts, time_base
            for packet in video.encode(vf):
                container.mux(packet)
            boxes.append(gt)
            pts_list.append(pts)
            pts += frame_durations[i % len(frame_durations)] if frame_durations else 100
        for packet in video.encode(None):
            container.mux(packet)
        audio_seconds = 0.0
        if astream is not None:
            total = float(pts * time_base)
            samples = int(total * 44100)
            t = np.arange(samples, dtype=np.float32) / 44100
            wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            chunk = 1024
            for start in range(0, samples, chunk):
                block = np.ascontiguousarray(np.stack([wave[start:start + chunk]] * 2))
                af = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
                af.sample_rate, af.pts = 44100, start
                af.time_base = Fraction(1, 44100)
                for packet in astream.encode(af):
                    container.mux(packet)
            for packet in astream.encode(None):
                container.mux(packet)
            audio_seconds = samples / 44100
    return SampleClip(path=path, face_boxes=boxes, pts=pts_list, time_base=time_base, fps=fps,
                      audio_seconds=audio_seconds)


#: Saturated colours (RGB) where a YUV matrix or range mix-up shows most.
COLOUR_BARS = ((220, 30, 30), (30, 200, 40), (40, 40, 220), (200, 200, 40), (230, 230, 230), (20, 20, 20))


def colour_bars(width: int = 192, height: int = 96) -> np.ndarray:
    """Vertical bars of :data:`COLOUR_BARS`, (height, width, 3) uint8 RGB (colour checks)."""
    image = np.zeros((height, width, 3), np.uint8)
    for i, colour in enumerate(COLOUR_BARS):
        image[:, i * width // len(COLOUR_BARS):(i + 1) * width // len(COLOUR_BARS)] = colour
    return image


def _add_video_stream(container, codec: str, rate, width: int, height: int, rotation: int, options=None):
    """A yuv420p ``codec`` stream for pictures players show at ``width`` x ``height`` pixels, stored turned
    against a display rotation of ``rotation`` degrees counter-clockwise (a quarter turn swaps the size)."""
    turns = quarter_turns(rotation)
    video = container.add_stream(codec, rate=rate, options=options or {})
    video.width, video.height = (height, width) if turns % 2 else (width, height)
    video.pix_fmt = "yuv420p"
    if turns:
        video.set_display_rotation(rotation)
    return video


def turned_copy(path: str, out: str, rotation: int = -90, max_frames: int | None = None) -> int:
    """Copy the video of ``path`` into ``out`` as a phone stores it: pictures turned against ``rotation``
    and a display matrix of ``rotation`` degrees counter-clockwise, so players show what ``path`` shows.

    Video only (H.264, CRF 18), same frame rate; for tests and benchmarks of sideways-stored input.
    Returns the number of frames written (at most ``max_frames``).
    """
    turns = quarter_turns(rotation)
    written = 0
    with av.open(path) as source, av.open(out, mode="w") as target:
        video_in = source.streams.video[0]
        width, height = video_in.codec_context.width // 2 * 2, video_in.codec_context.height // 2 * 2
        rate = video_in.average_rate or 25
        video = _add_video_stream(target, "libx264", rate, width, height, rotation, {"crf": "18"})
        for picture in source.decode(video_in):
            if max_frames is not None and written >= max_frames:
                break
            image = stored(picture.to_ndarray(format="rgb24")[:height, :width], turns)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = written, 1 / Fraction(rate)
            for packet in video.encode(frame):
                target.mux(packet)
            written += 1
        for packet in video.encode(None):
            target.mux(packet)
    return written
