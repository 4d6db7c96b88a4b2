"""Test helpers that read real media files back with PyAV."""

from __future__ import annotations

import hashlib
from fractions import Fraction

import av
import numpy as np


def video_frames(path: str, limit: int | None = None) -> list[np.ndarray]:
    """Decode the first video stream to RGB arrays."""
    with av.open(path) as c:
        out = []
        for frame in c.decode(c.streams.video[0]):
            out.append(frame.to_ndarray(format="rgb24"))
            if limit and len(out) >= limit:
                break
        return out


def video_times(path: str) -> list[float]:
    """Presentation time (seconds) of every decoded video frame."""
    with av.open(path) as c:
        return [float(f.pts * f.time_base) for f in c.decode(c.streams.video[0])]


def audio_digest(path: str) -> tuple[int, float, str]:
    """(packets, duration in seconds, md5 of all audio packet bytes) of the first audio stream."""
    with av.open(path) as c:
        stream = c.streams.audio[0]
        md5 = hashlib.md5()
        count, end = 0, 0.0
        for packet in c.demux(stream):
            if packet.size == 0:
                continue
            md5.update(bytes(packet))
            count += 1
            end = max(end, float((packet.pts + packet.duration) * packet.time_base))
        return count, end, md5.hexdigest()


#: Frequency of the test tone written by :func:`with_tone`, in Hz.
TONE_HZ = 440.0


def with_tone(video_path: str, out_path: str, codec: str, rate: int, layout: str, delay: float = 0.0) -> None:
    """Copy the video of ``video_path`` into ``out_path`` with a 440 Hz tone in ``codec``, starting
    ``delay`` seconds in and lasting as long as the video."""
    with av.open(video_path) as inp, av.open(out_path, mode="w") as out:
        video_in = inp.streams.video[0]
        video = out.add_stream_from_template(video_in)
        audio = out.add_stream(codec, rate=rate, layout=layout)
        seconds = inp.duration / av.time_base - delay
        for packet in inp.demux(video_in):
            if packet.size:
                packet.stream = video
                out.mux(packet)
        channels = len(audio.layout.channels)
        start, total, chunk = int(delay * rate), int(seconds * rate), 1024
        for at in range(0, total, chunk):
            n = min(chunk, total - at)
            wave = 0.3 * np.sin(2 * np.pi * TONE_HZ * (start + at + np.arange(n)) / rate)
            samples = np.repeat((wave * 32767).astype(np.int16), channels)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout=layout)
            frame.sample_rate, frame.pts = rate, start + at
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))


def sound(path: str) -> tuple[str, np.ndarray, int]:
    """(decoder name, mono samples in -1..1, sample rate) of the first audio stream."""
    with av.open(path) as c:
        stream = c.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono")
        parts, rate = [], 0
        for frame in c.decode(stream):
            for mono in resampler.resample(frame):
                parts.append(mono.to_ndarray().reshape(-1))
                rate = mono.sample_rate
        return stream.codec_context.name, np.concatenate(parts), rate


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    """The loudest frequency (Hz) of mono ``samples`` at ``rate`` samples per second, to about 1 Hz
    however short the sound: the windowed samples are zero-padded to at least a second, so a short
    recording (the last second-long segment of a camera, cut anywhere) is not read in 20 Hz steps."""
    n = max(len(samples), rate)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)), n=n))
    return float(np.argmax(spectrum) * rate / n)


#: Size (pixels) and length (frames) of the clip :func:`write_interlaced` writes.
INTERLACED_WIDTH, INTERLACED_HEIGHT, INTERLACED_FRAMES = 320, 240, 20


def _field_image(t: int) -> np.ndarray:
    """A white bar at x = 12 t pixels (t counts fields) on a dark grey background, RGB."""
    image = np.full((INTERLACED_HEIGHT, INTERLACED_WIDTH, 3), 40, np.uint8)
    x = 12 * t % (INTERLACED_WIDTH - 40)
    image[60:180, x:x + 40] = 230
    return image


def write_interlaced(path: str) -> None:
    """An H.264 clip coded interlaced, top field first: each frame's even rows show the bar at field
    time 2 i, its odd rows 1/50 s later, as an interlaced camera takes them."""
    with av.open(path, mode="w") as container:
        video = container.add_stream("libx264", rate=25, options={"x264-params": "interlaced=1:tff=1"})
        video.width, video.height, video.pix_fmt = INTERLACED_WIDTH, INTERLACED_HEIGHT, "yuv420p"
        graph = av.filter.Graph()  # setfield marks the frames interlaced, as x264 needs
        source = graph.add_buffer(width=INTERLACED_WIDTH, height=INTERLACED_HEIGHT, format="yuv420p",
                                  time_base=Fraction(1, 25))
        mark, sink = graph.add("setfield", "tff"), graph.add("buffersink")
        source.link_to(mark)
        mark.link_to(sink)
        graph.configure()
        for i in range(INTERLACED_FRAMES):
            woven = _field_image(2 * i)
            woven[1::2] = _field_image(2 * i + 1)[1::2]
            frame = av.VideoFrame.from_ndarray(woven, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            graph.push(frame)
            container.mux(video.encode(graph.pull()))
        container.mux(video.encode(None))


def comb(image: np.ndarray) -> float:
    """Mean distance (grey levels) of each row from the mean of the rows above and below it: comb teeth
    (rows alternating between two pictures) make it large, a progressive picture small."""
    grey = image.astype(np.float32).mean(axis=2)
    return float(np.abs(grey[1:-1] - (grey[:-2] + grey[2:]) / 2).mean())


def stream_types(path: str) -> list[str]:
    """Stream types in container order, e.g. ['video', 'audio']."""
    with av.open(path) as c:
        return [s.type for s in c.streams]


def box_difference(a: np.ndarray, b: np.ndarray, box) -> float:
    """Mean absolute difference (0..255) of two RGB frames inside a box (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    h, w = a.shape[:2]
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    return float(np.abs(a[y1:y2, x1:x2].astype(np.int16) - b[y1:y2, x1:x2].astype(np.int16)).mean())


def outside_mask(shape, boxes, grow: float) -> np.ndarray:
    """Boolean mask of pixels outside every box grown by ``grow`` x its size about its centre."""
    mask = np.ones(shape[:2], bool)
    for x1, y1, x2, y2 in boxes:
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * grow, (y2 - y1) / 2 * grow
        mask[max(int(cy - hh), 0):int(cy + hh) + 1, max(int(cx - hw), 0):int(cx + hw) + 1] = False
    return mask


def joined_ts(folder) -> str:
    """Two MPEG-TS recordings joined into one file in ``folder``: 10 frames of 320x240, then 10 of
    480x360; every picture bright on its left half, dark on its right. Returns its path."""
    parts = []
    for name, (w, h) in (("a.ts", (320, 240)), ("b.ts", (480, 360))):
        parts.append(folder / name)
        with av.open(str(parts[-1]), mode="w") as c:
            stream = c.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            picture = np.full((h, w, 3), 230, np.uint8)
            picture[:, w // 2:] = 20
            for i in range(10):
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts = i
                for packet in stream.encode(frame):
                    c.mux(packet)
            for packet in stream.encode(None):
                c.mux(packet)
    joined = folder / "joined.ts"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    return str(joined)
