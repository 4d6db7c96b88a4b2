"""Many cameras, one process: a shared batching detector, face generator or GPU compositor, one worker
per camera, metrics, signals.

Example:
    >>> from streamer.config import load_config
    >>> server = LiveServer(load_config("configs/rtsp-camera.yaml"))   # doctest: +SKIP
    >>> server.run()          # until SIGINT/SIGTERM; recordings are finalized  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from streamer.config import Config
from streamer.errors import OutputError
from streamer.factory import (build_compositor, build_detector, build_gan, build_shared_generator, gan_key,
                              uses_torch_compositor)
from streamer.live.batcher import SharedAnonymizer, SharedCompositor, SharedDetector
from streamer.live.camera import CameraWorker
from streamer.live.metrics import CameraStats, MetricsServer
from streamer.live.outputs import prepare_folder
from streamer.live.settings import CameraSpec, ServerSettings, parse_live

log = logging.getLogger(__name__)


class LiveServer:
    """Runs every camera of a config until stopped.

    Args:
        config: a config with ``cameras`` (and optionally ``server``) sections.
        specs, settings: already-parsed cameras/server settings (instead of reading ``config.extra``).
        detector: replaces the shared detector (tests).

    Cameras in gan mode share one face generator per device, whose calls
    batch the faces of every camera (:class:`SharedAnonymizer`). On a GPU
    (the torch compositor), cameras with the same anonymizer settings share
    one compositor instead, whose calls take the frames of every waiting
    camera at once (:class:`SharedCompositor`; the generator inside it then
    sees every camera's faces in one call too).

    Attributes:
        workers: one CameraWorker per camera, by name.
        metrics: the HTTP endpoint (None when ``server.metrics_port`` is -1).
        stop: set it (or send SIGINT/SIGTERM) to shut down.
    """

    def __init__(self, config: Config, specs: list[CameraSpec] | None = None,
                 settings: ServerSettings | None = None, detector=None) -> None:
        if specs is None:
            settings, specs = parse_live(config)
        for spec in specs:  # a recording folder that cannot be made is the config's error: said at once
            if spec.record_dir:
                try:
                    prepare_folder(spec.record_dir)
                except OutputError as exc:
                    raise OutputError(f"camera {spec.name}: {exc}") from None
        self.settings = settings or ServerSettings()
        self.stop = threading.Event()
        self.gave_up = False  # run() stopped because no camera came up within settings.startup_timeout
        # a live camera hands over one frame per call: no detector call holds more frames than there are
        # cameras, and a GPU detector captures graphs (and autotunes) only for the batch sizes that can occur
        batch = max(1, min(self.settings.max_batch, len(specs)))
        self.detector = SharedDetector(detector or build_detector(config, max_batch=batch), batch,
                                       self.settings.batch_window_ms / 1000)
        self.generators: dict[tuple, SharedAnonymizer] = {}  # by factory.gan_key
        self.compositors: dict[tuple, SharedCompositor] = {}
        self.gan_models: dict[tuple, object] = {}  # generators inside the shared compositors, by gan_key
        self.workers = {s.name: self._worker(s, i) for i, s in enumerate(specs)}
        self.stats: dict[str, CameraStats] = {n: w.stats for n, w in self.workers.items()}
        self.metrics = None
        if self.settings.metrics_port >= 0:
            self.metrics = MetricsServer(self.stats, self.settings.metrics_host, self.settings.metrics_port)

    def _worker(self, spec: CameraSpec, index: int) -> CameraWorker:
        """Camera ``index``'s worker, with its view of the shared GPU compositor or face generator."""
        if uses_torch_compositor(spec.config):
            return CameraWorker(spec, self.settings, self.detector, self.stop,
                                compositor=self._compositor_view(spec, index))
        return CameraWorker(spec, self.settings, self.detector, self.stop, self._generator_view(spec, index))

    def _compositor_view(self, spec: CameraSpec, index: int):
        """Camera ``index``'s view of the shared GPU compositor for its device and anonymizer settings."""
        config = spec.config
        key = (config.pipeline.device, repr(config.anonymizer))
        if key not in self.compositors:
            anonymizer = None
            if config.anonymizer.mode == "gan":  # one generator per gan_key, whatever the other settings
                gan = gan_key(config)
                if gan not in self.gan_models:
                    self.gan_models[gan] = build_gan(config)
                anonymizer = self.gan_models[gan]
            self.compositors[key] = SharedCompositor(build_compositor(config, anonymizer=anonymizer),
                                                     self.settings.max_batch, self.settings.batch_window_ms / 1000)
        return self.compositors[key].for_camera(index)

    def _generator_view(self, spec: CameraSpec, index: int):
        """Camera ``index``'s view of the shared generator for its device and mask (None unless in gan mode)."""
        if spec.config.anonymizer.mode != "gan":
            return None
        gan = gan_key(spec.config)
        if gan not in self.generators:
            self.generators[gan] = build_shared_generator(spec.config, self.settings.batch_window_ms / 1000)
        return self.generators[gan].for_camera(index)

    def start(self) -> "LiveServer":
        """Start the metrics endpoint and every camera (returns at once)."""
        if self.metrics is not None:
            self.metrics.start()
            log.info("metrics on http://%s:%d/metrics, health on /health", self.settings.metrics_host,
                     self.metrics.port)
        for worker in self.workers.values():
            worker.start()
        return self

    def run(self, duration: float | None = None) -> dict[str, dict]:
        """Start, wait for SIGINT/SIGTERM (or ``duration`` seconds), shut down; returns per-camera snapshots."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            self.start()
            started = time.monotonic()
            deadline = None if duration is None else started + duration
            give_up = self.settings.startup_timeout
            while not self.stop.wait(0.5):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if all(w.error is not None for w in self.workers.values()):
                    break
                if give_up and time.monotonic() - started >= give_up and self.never_up():
                    self.gave_up = True
                    break
        finally:
            self.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return {name: stats.snapshot() for name, stats in self.stats.items()}

    def never_up(self) -> bool:
        """Whether no camera has delivered a single frame yet."""
        return all(stats.frames_in == 0 for stats in self.stats.values())

    def _on_signal(self, signum, _frame) -> None:
        log.info("received %s: finalizing recordings", signal.Signals(signum).name,
                 extra={"event": "shutdown", "signal": signal.Signals(signum).name})
        self.stop.set()

    def shutdown(self, timeout: float = 15.0) -> None:
        """Stop every camera, finalize outputs, stop the detector and the endpoint."""
        self.stop.set()
        deadline = time.monotonic() + timeout
        for worker in self.workers.values():
            worker.join(max(0.1, deadline - time.monotonic()))
        self.detector.close()
        for shared in (*self.generators.values(), *self.compositors.values()):
            shared.close()
        if self.metrics is not None:
            self.metrics.close()
