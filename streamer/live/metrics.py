"""Per-camera counters, exported as Prometheus metrics, plus a JSON health check.

``GET /metrics``: Prometheus text (labels: ``camera``).
``GET /health``: JSON ``{"status": "ok"|"degraded", "cameras": {name: {...}}}``;
HTTP 200 when every camera is streaming and writing all its outputs, 503 otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from streamer.redact import redact, redact_value

#: Camera states, in the order of the ``streamer_camera_state`` gauge values.
STATES = ("starting", "connecting", "streaming", "reconnecting", "failed", "stopped")


class _Rate:
    """Events per second over the last ``window`` seconds."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self.times: deque = deque()

    def add(self, now: float) -> None:
        self.times.append(now)
        while self.times and self.times[0] < now - self.window:
            self.times.popleft()

    def value(self, now: float) -> float:
        while self.times and self.times[0] < now - self.window:
            self.times.popleft()
        return len(self.times) / self.window


@dataclass
class CameraStats:
    """What one camera reports (all counters since start; thread-safe enough: single writers).

    Attributes:
        frames_in: frames decoded from the input.
        frames_out: frames delivered to at least one output.
        dropped: frames dropped, by reason: ``input_queue`` (processing behind), ``output_queue``
            (encoding behind), ``on_error`` (anonymizer failed, policy drop), ``publish`` (server down),
            ``record`` (not recorded: writing the recording failed, e.g. a full disk).
        masked: frames blacked out because the anonymizer failed.
        faces: faces anonymized.
        reconnects: input reconnections.
        failing_outputs: the outputs whose writes fail now (``record``, ``publish``), with the error.
        latencies: recent added latencies (seconds, input decode -> output muxed).
        segments_deleted: recorded segments deleted by the retention settings (``keep_hours``, ``keep_gb``).
        audio_seconds: sound written to the outputs (cameras with ``audio: true``), seconds.
        audio_dropped_seconds: sound dropped because its pictures did not come within
            :data:`~streamer.live.camera.AUDIO_BUFFER_SECONDS`, seconds.
        first_in: when the first frame was decoded (``time.monotonic()`` seconds; None before).
        startup_s: seconds from the first frame in to the first frame out (None before): the models'
            start-up, which on a GPU holds cuDNN autotuning and CUDA-graph captures.
    """

    name: str
    state: str = "starting"
    detail: str = ""
    frames_in: int = 0
    frames_out: int = 0
    dropped: dict = field(default_factory=lambda: {"input_queue": 0, "output_queue": 0, "on_error": 0,
                                                   "publish": 0, "record": 0})
    masked: int = 0
    faces: int = 0
    reconnects: int = 0
    publish_reconnects: int = 0
    failing_outputs: dict = field(default_factory=dict)
    segments_deleted: int = 0
    audio_seconds: float = 0.0
    audio_dropped_seconds: float = 0.0
    first_in: float | None = None
    startup_s: float | None = None
    latencies: deque = field(default_factory=lambda: deque(maxlen=600))
    in_rate: _Rate = field(default_factory=_Rate)
    out_rate: _Rate = field(default_factory=_Rate)

    def latency_quantiles(self) -> dict[str, float]:
        """p50/p95 of the recent latencies in seconds (NaN when none yet)."""
        values = np.array(self.latencies, dtype=np.float64)
        if not len(values):
            return {"0.5": float("nan"), "0.95": float("nan")}
        return {"0.5": float(np.percentile(values, 50)), "0.95": float(np.percentile(values, 95))}

    def snapshot(self) -> dict:
        """A JSON-friendly view (used by /health and the end-of-run summary)."""
        now = time.monotonic()
        q = self.latency_quantiles()
        return {"state": self.state, "detail": redact(self.detail), "frames_in": self.frames_in,
                "frames_out": self.frames_out, "dropped": dict(self.dropped), "masked": self.masked,
                "faces": self.faces, "reconnects": self.reconnects,
                "failing_outputs": redact_value(dict(self.failing_outputs)), "segments_deleted": self.segments_deleted,
                "audio_s": round(self.audio_seconds, 2), "audio_dropped_s": round(self.audio_dropped_seconds, 2),
                "startup_s": None if self.startup_s is None else round(self.startup_s, 2),
                "input_fps": round(self.in_rate.value(now), 2), "output_fps": round(self.out_rate.value(now), 2),
                "latency_p50_s": None if q["0.5"] != q["0.5"] else round(q["0.5"], 4),
                "latency_p95_s": None if q["0.95"] != q["0.95"] else round(q["0.95"], 4)}


class LiveCollector:
    """Prometheus collector reading a dict of CameraStats at scrape time."""

    def __init__(self, cameras: dict[str, CameraStats]) -> None:
        self.cameras = cameras

    def collect(self):
        now = time.monotonic()
        families = {
            "in": CounterMetricFamily("streamer_input_frames", "Frames decoded from the input", labels=["camera"]),
            "out": CounterMetricFamily("streamer_output_frames", "Anonymized frames delivered", labels=["camera"]),
            "drop": CounterMetricFamily("streamer_frames_dropped", "Frames dropped, by reason",
                                        labels=["camera", "reason"]),
            "mask": CounterMetricFamily("streamer_frames_masked", "Frames blacked out on anonymizer failure",
                                        labels=["camera"]),
            "faces": CounterMetricFamily("streamer_faces", "Faces anonymized", labels=["camera"]),
            "rec": CounterMetricFamily("streamer_reconnects", "Input reconnections", labels=["camera"]),
            "prec": CounterMetricFamily("streamer_publish_reconnects", "Output server reconnections",
                                        labels=["camera"]),
            "ifps": GaugeMetricFamily("streamer_input_fps", "Input frames per second (5 s window)",
                                      labels=["camera"]),
            "ofps": GaugeMetricFamily("streamer_output_fps", "Output frames per second (5 s window)",
                                      labels=["camera"]),
            "lat": GaugeMetricFamily("streamer_latency_seconds",
                                     "Added latency, input decode -> output muxed (recent frames)",
                                     labels=["camera", "quantile"]),
            "audio": CounterMetricFamily("streamer_audio_seconds", "Sound written to the outputs (seconds)",
                                         labels=["camera"]),
            "adrop": CounterMetricFamily("streamer_audio_dropped_seconds", "Sound dropped: its pictures did not "
                                         "come in time (seconds)", labels=["camera"]),
            "startup": GaugeMetricFamily("streamer_startup_seconds", "Seconds from the first frame in to the "
                                         "first frame out (model start-up; absent before)", labels=["camera"]),
            "state": GaugeMetricFamily("streamer_camera_state", "1 for the camera's current state",
                                       labels=["camera", "state"]),
            "failing": GaugeMetricFamily("streamer_output_failing", "1 while writing this output fails "
                                         "(record: the recording, publish: the RTSP/RTMP server)",
                                         labels=["camera", "output"]),
        }
        for name, s in list(self.cameras.items()):
            families["in"].add_metric([name], s.frames_in)
            families["out"].add_metric([name], s.frames_out)
            for reason, n in s.dropped.items():
                families["drop"].add_metric([name, reason], n)
            families["mask"].add_metric([name], s.masked)
            families["faces"].add_metric([name], s.faces)
            families["rec"].add_metric([name], s.reconnects)
            families["prec"].add_metric([name], s.publish_reconnects)
            families["audio"].add_metric([name], s.audio_seconds)
            families["adrop"].add_metric([name], s.audio_dropped_seconds)
            families["ifps"].add_metric([name], s.in_rate.value(now))
            families["ofps"].add_metric([name], s.out_rate.value(now))
            for quantile, value in s.latency_quantiles().items():
                families["lat"].add_metric([name, quantile], value)
            if s.startup_s is not None:
                families["startup"].add_metric([name], s.startup_s)
            for state in STATES:
                families["state"].add_metric([name, state], 1.0 if s.state == state else 0.0)
            for output in ("record", "publish"):
                families["failing"].add_metric([name, output], 1.0 if output in s.failing_outputs else 0.0)
        yield from families.values()


class MetricsServer:
    """HTTP endpoint serving ``/metrics`` and ``/health`` on a daemon thread.

    Args:
        cameras: the live stats, read at each request.
        host, port: where to listen (port 0 = any free port; see ``port`` after start).
    """

    def __init__(self, cameras: dict[str, CameraStats], host: str = "127.0.0.1", port: int = 9108) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(LiveCollector(cameras))
        registry, stats = self.registry, cameras

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path.startswith("/metrics"):
                    body, code, kind = generate_latest(registry), 200, "text/plain; version=0.0.4"
                elif self.path.startswith("/health"):
                    cams = {n: s.snapshot() for n, s in list(stats.items())}
                    ok = all(c["state"] == "streaming" and not c["failing_outputs"] for c in cams.values())
                    body = json.dumps({"status": "ok" if ok else "degraded", "cameras": cams}).encode()
                    code, kind = (200 if ok else 503), "application/json"
                else:
                    body, code, kind = b"not found\n", 404, "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="streamer-metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self.thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
