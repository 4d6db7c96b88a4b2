"""One camera: reader -> anonymizer -> outputs, on three threads linked by bounded queues.

Real time first: when the anonymizer falls behind, the reader drops the
*oldest* queued frame (counted as ``input_queue``) so latency stays bounded;
when encoding falls behind the same happens before the outputs
(``output_queue``). Outputs only receive frames returned by
:class:`~streamer.pipeline.FrameProcessor` that are not ``dropped``: a frame
the anonymizer failed on is blacked out or dropped per ``on_error``, never
published raw. A dead camera only stalls its own threads.

A camera that carries its sound (``audio: true``) hands it from the reader
straight to the writer (:class:`~streamer.live.audio.AudioBuffer`), which
writes each stretch of sound after the picture it plays with.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from streamer.errors import FrameAbort, StreamerError
from streamer.factory import build_compositor
from streamer.live.audio import AudioBuffer
from streamer.live.metrics import CameraStats
from streamer.live.outputs import Publisher, SegmentRecorder
from streamer.live.rtsp_source import TIME_BASE, Backoff, LiveFrame, LiveSource
from streamer.live.settings import CameraSpec, ServerSettings
from streamer.pipeline import FrameProcessor, RunStats
from streamer.stages.tracker import FaceTracker

log = logging.getLogger(__name__)


def put_latest(q: queue.Queue, item) -> bool:
    """Put without blocking; if the queue is full drop its oldest item. Returns True if one was dropped."""
    dropped = False
    while True:
        try:
            q.put_nowait(item)
            return dropped
        except queue.Full:
            try:
                q.get_nowait()
                dropped = True
            except queue.Empty:
                pass


#: Per-stage timings kept per camera (frames): recent enough for live figures, bounded for 24/7 runs.
STAGE_WINDOW_FRAMES = 3000
#: Most sound (seconds) a camera holds while its pictures are in the anonymizer; older sound is dropped.
AUDIO_BUFFER_SECONDS = 10.0

class CameraWorker:
    """Runs one camera until ``stop`` is set.

    Args:
        spec: the camera's settings.
        server: process-wide live settings.
        detector: the shared (batching) detector.
        stop: set to shut the camera down; outputs are finalized.
        anonymizer: gan mode: this camera's view of the shared face generator
            (None: the camera loads its own).
        compositor: this camera's view of a shared GPU compositor
            (:class:`~streamer.live.batcher.CameraCompositor`); None: the camera builds its own.
    """

    def __init__(self, spec: CameraSpec, server: ServerSettings, detector, stop: threading.Event,
                 anonymizer=None, compositor=None) -> None:
        self.spec = spec
        self.server = server
        self.stop = stop
        self.stats = CameraStats(spec.name)
        self.run_stats = RunStats(stage_window=STAGE_WINDOW_FRAMES)
        self.compositor = compositor or build_compositor(spec.config, anonymizer=anonymizer)
        self.detector = detector
        self.in_q: queue.Queue = queue.Queue(maxsize=server.queue_size)
        self.out_q: queue.Queue = queue.Queue(maxsize=server.queue_size)
        self.audio = AudioBuffer(AUDIO_BUFFER_SECONDS) if spec.audio else None
        self.source = LiveSource(spec.input, stop, spec.transport, server.connect_timeout, spec.stall_seconds,
                                 Backoff(server.backoff_initial, server.backoff_max), self._on_state, spec.name,
                                 on_audio=self.audio.put if self.audio is not None else None)
        self.publisher: Publisher | None = None
        self.recorder: SegmentRecorder | None = None
        self.error: BaseException | None = None
        self.threads = [threading.Thread(target=self._guard, args=(fn,), name=f"{spec.name}-{fn.__name__}",
                                         daemon=True) for fn in (self._read, self._process, self._write)]

    def _on_state(self, state: str, detail: str) -> None:
        never_up = self.stats.frames_in == 0
        if state == "stopped" and self.stats.state == "failed":
            return  # the final report keeps saying it failed, and why
        if never_up and (state == "reconnecting" or (state == "connecting" and self.stats.state == "failed")):
            # never came up: report it as failed (once in the log) and keep retrying
            if self.stats.state != "failed":
                log.error("camera %s: %s", self.spec.name, detail,
                          extra={"camera": self.spec.name, "event": "camera_failed"})
            if state == "connecting":  # keep showing why the last attempt failed
                detail = self.stats.detail or detail
            state = "failed"
        self.stats.state, self.stats.detail = state, detail
        self.stats.reconnects = self.source.reconnects

    def start(self) -> "CameraWorker":
        for thread in self.threads:
            thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self.threads[::-1]:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _guard(self, fn) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - a camera failure must not take the others down
            self.error = exc
            self.stats.state, self.stats.detail = "failed", str(exc)
            log.error("camera %s stopped: %s", self.spec.name, exc, exc_info=not isinstance(exc, StreamerError),
                      extra={"camera": self.spec.name, "event": "camera_stopped"})
            self.stop_camera()

    def stop_camera(self) -> None:
        """Stop this camera only (used on fatal errors such as on_error: abort)."""
        self._own_stop = True

    _own_stop = False

    def _running(self) -> bool:
        return not (self.stop.is_set() or self._own_stop)

    def _read(self) -> None:
        for frame in self.source:
            if self.stats.first_in is None:
                self.stats.first_in = frame.arrival
            self.stats.frames_in += 1
            self.stats.in_rate.add(frame.arrival)
            if put_latest(self.in_q, frame):
                self.stats.dropped["input_queue"] += 1
            if not self._running():
                break
        self._on_state("stopped", "")

    def _process(self) -> None:
        processor: FrameProcessor | None = None
        while self._running() or not self.in_q.empty():
            try:
                frame: LiveFrame = self.in_q.get(timeout=0.2)
            except queue.Empty:
                continue
            if processor is None or processor.fps != frame.fps:
                tracker = FaceTracker(self.spec.config.tracker, fps=frame.fps) \
                    if self.spec.config.tracker.enabled else None
                processor = FrameProcessor(self.spec.config, self.detector, tracker, self.compositor,
                                           self.run_stats)
                processor.fps = frame.fps
            try:
                processor.process([frame])
            except FrameAbort:
                raise
            self.stats.faces = sum(self.run_stats.anonymized.values())
            self.stats.masked = self.run_stats.frames_masked
            self.stats.dropped["on_error"] = self.run_stats.frames_dropped
            if frame.dropped:
                continue
            if put_latest(self.out_q, frame):
                self.stats.dropped["output_queue"] += 1

    def _open_outputs(self, frame: LiveFrame) -> None:
        spec, server = self.spec, self.server
        audio = self.source.audio.spec if self.source.audio is not None else None  # None: the camera has no sound
        if spec.output:
            self.publisher = Publisher(spec.output, spec.config.encoder, frame.fps, spec.output_transport,
                                       server.connect_timeout, Backoff(server.backoff_initial, server.backoff_max),
                                       audio=audio, on_reader_gone=self.stop.set)  # stdout's reader gone: stop
        if spec.record_dir:
            self.recorder = SegmentRecorder(spec.record_dir, spec.name, spec.config.encoder, frame.fps,
                                            spec.segment_seconds, audio=audio, keep_seconds=spec.keep_hours * 3600,
                                            keep_bytes=int(spec.keep_gb * 1e9))

    def _write_audio(self, before: float) -> None:
        """Write the sound that starts before ``before`` (seconds on the frames' timeline) to every output.

        A camera whose sound came only after its outputs opened (silent at
        first, its microphone switched on later): each output is closed and
        reopens with a sound track at the next picture (a new segment, a new
        publishing session).
        """
        spec = self.source.audio.spec
        for output in (self.recorder, self.publisher):
            if output is not None and spec is not None and output.audio_spec != spec:
                output.audio_spec = spec
                output.close()
        for _, sound in self.audio.take(before):
            for output in (self.recorder, self.publisher):
                if output is not None:
                    output.write_audio(sound)
            self.stats.audio_seconds += sound.samples / sound.sample_rate
        self.stats.audio_dropped_seconds = self.audio.dropped_seconds

    def _started(self, now: float) -> None:
        """Record and log the start-up: seconds from the first frame in to the first frame out."""
        self.stats.startup_s = now - (self.stats.first_in if self.stats.first_in is not None else now)
        log.info("camera %s: first anonymized frame out %.1f s after the first frame in (model start-up; "
                 "%d frames dropped meanwhile)", self.spec.name, self.stats.startup_s,
                 self.stats.dropped["input_queue"],
                 extra={"camera": self.spec.name, "event": "first_frame_out", "startup_s": self.stats.startup_s})

    def _write(self) -> None:
        opened = False
        sound_until = 0.0  # seconds: the end of the last picture written, up to where its sound goes out
        try:
            while self._running() or not self.out_q.empty() or self.threads[1].is_alive():
                try:
                    frame: LiveFrame = self.out_q.get(timeout=0.2)
                except queue.Empty:
                    if not self.threads[1].is_alive():
                        break
                    continue
                at = float(frame.pts * TIME_BASE)  # seconds on the camera's timeline
                if not opened:
                    self._open_outputs(frame)
                    opened = True
                    if self.audio is not None:  # sound from before the first picture out has no picture to go with
                        self.audio.take(before=at)
                delivered = False
                started = time.perf_counter()
                for output in (self.recorder, self.publisher):
                    if output is not None:
                        written = output.frames_written
                        output.write(frame)
                        delivered |= output.frames_written > written
                # the outputs' encode and mux time: with 16 cameras the encoders may be what limits
                self.run_stats.add_stage_time("encode", time.perf_counter() - started)
                if self.audio is not None:
                    sound_until = at + 1 / frame.fps
                    self._write_audio(before=sound_until)
                if self.recorder is not None:
                    self.stats.dropped["record"] = self.recorder.frames_dropped
                    self.stats.segments_deleted = self.recorder.segments_deleted
                if self.publisher is not None:
                    self.stats.dropped["publish"] = self.publisher.frames_dropped
                    self.stats.publish_reconnects = self.publisher.reconnects
                self.stats.failing_outputs = {kind: output.last_error for kind, output in
                                              (("record", self.recorder), ("publish", self.publisher))
                                              if output is not None and output.failing}
                if delivered:
                    now = time.monotonic()
                    if self.stats.startup_s is None:
                        self._started(now)
                    self.stats.frames_out += 1
                    self.stats.out_rate.add(now)
                    self.stats.latencies.append(now - frame.arrival)
        finally:
            if self.audio is not None and opened:
                self._write_audio(before=sound_until)
            for output in (self.recorder, self.publisher):
                if output is not None:
                    output.close()
