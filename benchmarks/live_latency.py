"""Added latency of a live camera through ``streamer serve`` (real RTSP servers, real H.264).

publisher (x264 ultrafast, frame number as a 16-bit barcode in the top rows, paced at --fps)
  -> RTSP server A -> streamer LiveServer (decode, detect, track, anonymize (--mode), encode)
  -> RTSP server B -> reader (decodes, reads the barcode)

Latency of a frame = time the reader decoded it at the output server - time the publisher
handed it to its encoder, so it includes the publisher's encode, both RTSP hops and the reader's
decode (an upper bound of the latency streamer adds). streamer's own share (its decode done ->
its output muxed) is reported too, with the detector/anonymizer stage times and drop counts.
Needs node + the npm rtsp-streaming-server (.ci/install-rtsp-server.sh).

With ``--cameras N`` the same server also runs N - 1 more cameras (each published through the same
two servers), each fed by a replay of the clip encoded once beforehand (so the
publishers cost little), as a camera count under load: every camera's input and output fps and
drops are reported, and how many kept real time (output >= 95 % of ``--fps``). The latency figures
stay those of the first camera.

    python benchmarks/live_latency.py --width 1920 --height 1080 --fps 30 --seconds 30
    python benchmarks/live_latency.py --mode gan --device cuda --generator-weights random --seconds 15
    python benchmarks/live_latency.py --mode gan --device cuda --cameras 16 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "live"))

from conftest import RtspServer  # noqa: E402  (the tests' server launcher)

BITS, BLOCK = 16, 40


def stamp_bits(width: int) -> int:
    """How many barcode bits fit across a frame ``width`` pixels wide (16 from 640 px up)."""
    return min(BITS, width // BLOCK)


def stamp(image: np.ndarray, n: int) -> None:
    """Write ``n`` (below ``2 ** stamp_bits(width)``) as black/white 40x40 blocks in the top-left corner."""
    for b in range(stamp_bits(image.shape[1])):
        image[:BLOCK, b * BLOCK:(b + 1) * BLOCK] = 255 if (n >> b) & 1 else 0


def read_stamp(image: np.ndarray) -> int:
    """Read the barcode written by :func:`stamp`."""
    row = image[BLOCK // 4: 3 * BLOCK // 4]
    return sum(1 << b for b in range(stamp_bits(image.shape[1]))
               if row[:, b * BLOCK + BLOCK // 4: (b + 1) * BLOCK - BLOCK // 4].mean() > 128)


def camera_encoder(container, size: tuple[int, int], fps: int):
    """An H.264 stream in ``container`` encoding as a camera does: x264 ultrafast, low latency (no
    B-frames), a keyframe a second; ``size`` is (height, width) in pixels."""
    s = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "tune": "zerolatency",
                                                             "crf": "23", "g": str(fps)})
    s.height, s.width = size
    s.pix_fmt = "yuv420p"
    return s


def publish(url: str, frames: list[np.ndarray], fps: int, sent: dict, stop: threading.Event) -> None:
    out = av.open(url, "w", format="rtsp", options={"rtsp_transport": "udp"}, timeout=(5, 5))
    s = camera_encoder(out, frames[0].shape[:2], fps)
    start, n = time.monotonic(), 0
    while not stop.is_set():
        delay = start + n / fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        image = frames[n % len(frames)].copy()
        key = n % (1 << stamp_bits(image.shape[1]))  # frame numbers wrap where the barcode ends
        stamp(image, key)
        vf = av.VideoFrame.from_ndarray(image, format="rgb24")
        vf.pts, vf.time_base = n, Fraction(1, fps)
        sent[key] = time.monotonic()
        for p in s.encode(vf):
            out.mux(p)
        n += 1
    out.close()


def encode_once(frames: list[np.ndarray], fps: int, path: str) -> str:
    """The frames encoded as a camera would send them (:func:`camera_encoder`) into the Matroska file
    ``path``; returns ``path``."""
    with av.open(path, "w") as out:
        s = camera_encoder(out, frames[0].shape[:2], fps)
        for n, image in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(image, format="rgb24")
            vf.pts, vf.time_base = n, Fraction(1, fps)
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def replay(url: str, path: str, stop: threading.Event) -> None:
    """Publish the packets of ``path`` to ``url`` (RTSP over UDP) at their own pace, over and over, with
    timestamps running on, until ``stop``."""
    with av.open(path) as source, av.open(url, "w", format="rtsp", options={"rtsp_transport": "udp"},
                                          timeout=(5, 5)) as out:
        stream = source.streams.video[0]
        target = out.add_stream_from_template(stream)  # while the source is open: it copies its parameters
        packets = [(bytes(p), p.pts, p.is_keyframe) for p in source.demux(stream) if p.size]
        step = packets[1][1] - packets[0][1]
        period = max(pts for _, pts, _ in packets) + step  # one loop, time-base ticks
        tick = float(stream.time_base)
        start, loop = time.monotonic(), 0
        while not stop.is_set():
            for data, pts, keyframe in packets:
                at = pts + loop * period
                delay = start + at * tick - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                copy = av.Packet(data)
                copy.pts = copy.dts = at
                copy.time_base, copy.is_keyframe, copy.stream = stream.time_base, keyframe, target
                out.mux(copy)
                if stop.is_set():
                    break
            loop += 1


def read(url: str, sent: dict, latencies: list, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with av.open(url, options={"rtsp_transport": "udp"}, timeout=(10, 5)) as c:
                for vf in c.decode(video=0):
                    now = time.monotonic()
                    t0 = sent.get(read_stamp(vf.to_ndarray(format="rgb24")))
                    if t0 is not None:
                        latencies.append(now - t0)
                    if stop.is_set():
                        return
        except av.FFmpegError:
            time.sleep(0.2)


def stage_means(run_stats) -> dict[str, float]:
    """Mean milliseconds per frame of each stage a camera timed (detect, track, anonymize, encode)."""
    return {stage: round(float(np.mean(list(ms))), 1) for stage, ms in list(run_stats.stage_ms.items()) if ms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=30.0,
                    help="measured duration, from 5 s after every camera's first frame out")
    ap.add_argument("--startup-limit", type=float, default=120.0,
                    help="most seconds to wait for every camera's first frame out (model start-up)")
    ap.add_argument("--detector-width", type=int, default=640, help="detector input width (px)")
    ap.add_argument("--preset", default="ultrafast", help="x264 preset of streamer's output")
    ap.add_argument("--mode", default="blur", help="anonymizer mode (blur, pixelate, mask, gan)")
    ap.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"), help="where models run")
    ap.add_argument("--generator-weights", metavar="PATH|random",
                    help="gan mode: this weights file, or 'random' (same cost as trained weights; timing only)")
    ap.add_argument("--cameras", type=int, default=1, help="cameras the server runs at once (the first one timed)")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    if args.cameras < 1:
        ap.error(f"--cameras must be at least 1, got {args.cameras}")

    from engines.generator import use_generator_weights
    from engines.select import describe_machine
    from streamer.config import config_from_dict
    from streamer.live.server import LiveServer
    from streamer.live.settings import parse_live
    from streamer.logs import setup_logging
    from streamer.sample import make_sample_clip

    setup_logging()  # streamer's own lines on stderr: each model's GPU warm-up, each camera's first frame out

    clip = make_sample_clip(f"/tmp/live-bench-{args.width}x{args.height}.mp4", seconds=2.0, fps=args.fps,
                            width=args.width, height=args.height, faces=1, audio=False)
    with av.open(clip.path) as c:
        frames = [vf.to_ndarray(format="rgb24") for vf in c.decode(video=0)]
    generator = use_generator_weights(args.generator_weights, tempfile.mkdtemp()) if args.mode == "gan" else None
    src, dst = RtspServer().start(), RtspServer().start()
    stop, sent, latencies = threading.Event(), {}, []
    others = [f"cam{i}" for i in range(1, args.cameras)]
    config = config_from_dict({
        "detector": {"input_width": args.detector_width}, "encoder": {"preset": args.preset, "crf": 23},
        "anonymizer": {"mode": args.mode}, "pipeline": {"device": args.device},
        "server": {"metrics_port": -1, "queue_size": 2},
        "cameras": [{"name": "cam", "input": src.play_url("in"), "transport": "udp",
                     "output": dst.publish_url("out"), "output_transport": "udp"}]
        + [{"name": name, "input": src.play_url(name), "transport": "udp",
            "output": dst.publish_url(f"out-{name}"), "output_transport": "udp"} for name in others]})
    settings, specs = parse_live(config)
    server = LiveServer(config, specs, settings)
    threads = [threading.Thread(target=publish, args=(src.publish_url("in"), frames, args.fps, sent, stop),
                                daemon=True)]
    if others:
        encoded = encode_once(frames, args.fps, f"/tmp/live-bench-{args.width}x{args.height}-camera.mkv")
        threads += [threading.Thread(target=replay, args=(src.publish_url(name), encoded, stop), daemon=True)
                    for name in others]
    try:
        for t in threads:
            t.start()
        server.start()
        started = time.monotonic()
        # the measured window opens once every camera delivers: a GPU's start-up (cuDNN autotuning, CUDA-graph
        # captures) took longer than the fixed 8 s of warm-up this used to allow (2026-11-27b, H100)
        while time.monotonic() - started < args.startup_limit and any(
                s.frames_out == 0 for s in server.stats.values()):
            time.sleep(0.2)
        startup_wait = time.monotonic() - started
        threads.append(threading.Thread(target=read, args=(dst.play_url("out"), sent, latencies, stop),
                                        daemon=True))
        threads[-1].start()
        time.sleep(5)
        latencies.clear()
        stats = server.stats["cam"]
        worker = server.workers["cam"]
        for each in server.workers.values():
            each.run_stats.stage_ms.clear()
        before = {name: (s.frames_in, s.frames_out, dict(s.dropped)) for name, s in server.stats.items()}
        in0, out0, drop0 = before["cam"]
        stats.latencies.clear()
        time.sleep(args.seconds)
        snaps = {name: s.snapshot() for name, s in server.stats.items()}
        snap = snaps["cam"]
        processed = max(1, snap["frames_out"] - out0)
        per_camera = {name: {"startup_s": snaps[name]["startup_s"],
                             "stage_ms_per_frame": stage_means(server.workers[name].run_stats),
                             "input_fps": round((snaps[name]["frames_in"] - before[name][0]) / args.seconds, 1),
                             "output_fps": round((snaps[name]["frames_out"] - before[name][1]) / args.seconds, 1),
                             "dropped": {k: v - before[name][2].get(k, 0) for k, v in snaps[name]["dropped"].items()}}
                      for name in snaps}
        result = {
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
            "machine": describe_machine(args.device),
            "stream": f"{args.width}x{args.height}@{args.fps}", "mode": args.mode,
            **({"generator": generator} if generator else {}),
            "detector_width": args.detector_width,
            "input_fps": round((snap["frames_in"] - in0) / args.seconds, 1),
            "output_fps": round(processed / args.seconds, 1),
            "dropped": {k: v - drop0.get(k, 0) for k, v in snap["dropped"].items()},
            "end_to_end_latency_s": {"p50": round(float(np.percentile(latencies, 50)), 3),
                                     "p95": round(float(np.percentile(latencies, 95)), 3),
                                     "frames": len(latencies)} if latencies else None,
            "streamer_latency_s": {"p50": snap["latency_p50_s"], "p95": snap["latency_p95_s"]},
            "startup_s": snap["startup_s"], "startup_wait_s": round(startup_wait, 1),
            "cameras_never_out": sorted(name for name, s in snaps.items() if s["startup_s"] is None),
            "stage_ms_per_frame": stage_means(worker.run_stats),
        }
        if others:
            result["cameras"] = args.cameras
            result["cameras_real_time"] = sum(c["output_fps"] >= 0.95 * args.fps for c in per_camera.values())
            result["output_fps_all_cameras"] = round(sum(c["output_fps"] for c in per_camera.values()), 1)
            result["per_camera"] = per_camera
    finally:
        stop.set()
        server.shutdown()
        for t in threads:
            t.join(timeout=10)
        src.stop()
        dst.stop()
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
