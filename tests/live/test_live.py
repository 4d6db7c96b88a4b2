"""Live cameras against real RTSP servers: anonymized output, reconnect, unreachable camera,
metrics, SIGTERM finalizing recordings."""

from __future__ import annotations

import json
import queue
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from conftest import free_port
from streamer.config import ConfigError, config_from_dict, load_config
from streamer.live.camera import put_latest
from streamer.live.rtsp_source import Backoff
from streamer.live.settings import parse_live
from tests.conftest import run_cli


def test_camera_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"cameras\[1\]\.input: missing"):
        parse_live(config_from_dict({"cameras": [{"input": "rtsp://a/b", "record": "/tmp/x"}, {"record": "/tmp"}]}))
    with pytest.raises(ConfigError, match=r"cameras\[0\]: needs an output"):
        parse_live(config_from_dict({"cameras": [{"input": "rtsp://a/b"}]}))
    with pytest.raises(ConfigError, match=r"server\.stall_seconds"):
        parse_live(config_from_dict({"server": {"stall_seconds": "x"}, "cameras": [{"input": "rtsp://a"}]}))
    with pytest.raises(ConfigError, match=r"server\.queue_sise' \(did you mean 'queue_size'"):
        parse_live(config_from_dict({"server": {"queue_sise": 2}, "cameras": [{"input": "rtsp://a"}]}))
    with pytest.raises(ConfigError, match=r"server\.max_batch' must be >= 1"):
        parse_live(config_from_dict({"server": {"max_batch": 0}, "cameras": [{"input": "rtsp://a"}]}))
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.output: must be an rtsp:// or rtmp:// URL, or -"):
        parse_live(config_from_dict({"cameras": [{"input": "rtsp://a", "output": "http://b"}]}))
    with pytest.raises(ConfigError, match=r"cameras\[1\]\.output: only one camera can write to standard output"):
        parse_live(config_from_dict({"cameras": [{"input": "rtsp://a", "output": "-"},
                                                 {"input": "rtsp://b", "output": "-"}]}))
    server, cams = parse_live(load_config("rtsp-camera"))
    assert [c.config.anonymizer.mode for c in cams] == ["blur", "pixelate"]


def test_recording_retention_settings():
    camera = {"input": "rtsp://a/b", "record": {"dir": "/tmp/x", "keep_hours": 168, "keep_gb": 0.5}}
    _, (spec,) = parse_live(config_from_dict({"cameras": [camera]}))
    assert (spec.keep_hours, spec.keep_gb) == (168.0, 0.5)
    camera["record"]["keep_gb"] = -1
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.record\.keep_gb: must be a number >= 0"):
        parse_live(config_from_dict({"cameras": [camera]}))


def test_backoff_grows_with_jitter_and_input_queue_drops_oldest():
    b = Backoff(0.5, 4.0, random.Random(1))
    delays = [b.next() for _ in range(6)]
    assert 0.25 <= delays[0] <= 0.5 and all(2.0 <= d <= 4.0 for d in delays[3:])
    q: queue.Queue = queue.Queue(maxsize=2)
    drops = [put_latest(q, i) for i in range(5)]
    assert drops == [False, False, True, True, True] and [q.get(), q.get()] == [3, 4]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _health(port: int) -> dict:
    return json.loads(_get(f"http://127.0.0.1:{port}/health")[1])["cameras"]


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (urllib.error.URLError, ConnectionError, KeyError):
            value = None  # endpoint not up yet
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _read_frames(url: str, n: int, timeout: float = 20.0) -> list[np.ndarray]:
    frames = []
    with av.open(url, options={"rtsp_transport": "udp"}, timeout=(timeout, 5)) as c:
        for vf in c.decode(video=0):
            frames.append(vf.to_ndarray(format="rgb24"))
            if len(frames) >= n:
                break
    return frames


def _decode_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def start_serve(tmp_path: Path, cameras: list[dict], *cli_args: str, **server) -> tuple[subprocess.Popen, int]:
    """Start ``streamer serve`` on ``cameras`` with the tests' fast settings (640 px detector,
    ultrafast x264, input queue of 2) plus ``server`` settings and ``cli_args``; returns (process,
    metrics port)."""
    metrics_port = free_port()
    config = {
        "detector": {"input_width": 640}, "encoder": {"preset": "ultrafast", "crf": 28},
        "pipeline": {"threads": 1},
        "server": {"metrics_port": metrics_port, "queue_size": 2, **server},
        "cameras": cameras,
    }
    cfg_path = tmp_path / "serve.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "streamer.cli", "serve", "--config", str(cfg_path), *cli_args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, metrics_port


def record_with_quick_form(tmp_path: Path, url: str, out: Path, *cli_args: str, min_bytes: int) -> str:
    """Run ``streamer anonymize URL OUT`` (the tests' fast settings, no metrics endpoint) until one of its
    recorded segments beside ``out`` holds ``min_bytes``, then SIGTERM it; returns its stderr (exit 0
    checked)."""
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(yaml.safe_dump({"detector": {"input_width": 640}, "encoder": {"preset": "ultrafast"},
                                   "server": {"metrics_port": -1}}))
    proc = subprocess.Popen([sys.executable, "-m", "streamer.cli", "anonymize", url, str(out), "-c", str(cfg),
                             *cli_args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: proc.poll() is None and any(p.stat().st_size > min_bytes
                                                  for p in out.parent.glob(f"{out.stem}-*{out.suffix}")),
              60, "a recording growing")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


def frames_out(proc: subprocess.Popen, metrics_port: int, camera: str) -> int:
    """Frames ``camera`` has sent out so far; fails the test with streamer's stderr if it exited."""
    if proc.poll() is not None:
        pytest.fail(proc.communicate()[1])
    return _health(metrics_port)[camera]["frames_out"]


def test_live_server_end_to_end(tmp_path, face_clip, rtsp_server_factory, publisher_factory):
    from streamer.factory import build_detector

    source, sink = rtsp_server_factory(), rtsp_server_factory()
    publisher_factory(face_clip.path, source.publish_url("cam"))
    rec = tmp_path / "rec"
    proc, metrics_port = start_serve(tmp_path, [
        {"name": "door", "input": source.play_url("cam"), "transport": "udp",
         "output": sink.publish_url("door"), "output_transport": "udp",
         "record": {"dir": str(rec), "segment_seconds": 2}},
        {"name": "dead", "input": f"rtsp://127.0.0.1:{free_port()}/none", "record": str(tmp_path / "dead")},
    ], stall_seconds=2, connect_timeout=3, backoff_initial=0.3, backoff_max=1.0)
    try:
        _wait(lambda: frames_out(proc, metrics_port, "door") > 10, 60, "anonymized frames")

        # 1. the anonymized stream arrives at the output server, and its faces are gone
        out = _read_frames(sink.play_url("door"), 25)
        detector = build_detector(load_config(None))
        faces_out = [len(d[d.scores > 0.5]) for d in detector(out)]
        with av.open(face_clip.path) as c:
            raw = [vf.to_ndarray(format="rgb24") for _, vf in zip(range(25), c.decode(video=0))]
        faces_in = [len(d[d.scores > 0.5]) for d in detector(raw)]
        assert sum(faces_in) >= 20, "the input clip must show faces"
        assert sum(faces_out) <= 1, f"faces still recognizable in the output: {faces_out}"
        door = _health(metrics_port)["door"]
        assert door["faces"] > 0
        # the models' start-up is reported: from the first frame in to the first frame out, seconds
        assert door["startup_s"] is not None and 0 < door["startup_s"] < 60, door
        assert 'streamer_startup_seconds{camera="door"}' in _get(f"http://127.0.0.1:{metrics_port}/metrics")[1]

        # 2. unreachable camera: reported, the other keeps flowing
        dead = _health(metrics_port)["dead"]
        assert dead["startup_s"] is None  # never delivered a frame
        assert dead["state"] == "failed" and "cannot connect" in dead["detail"], dead
        assert _get(f"http://127.0.0.1:{metrics_port}/health")[0] == 503

        # 3. input server killed and restarted -> reconnect, output continues
        before_outage = sorted(rec.glob("door-*.mp4"))
        frames_before = _health(metrics_port)["door"]["frames_out"]
        port_pub, port_play = source.publish_port, source.play_port
        source.stop()
        time.sleep(3)
        source.start()
        assert (source.publish_port, source.play_port) == (port_pub, port_play)
        _wait(lambda: _health(metrics_port)["door"]["reconnects"] >= 1, 40, "a reconnect")
        _wait(lambda: _health(metrics_port)["door"]["frames_out"] > frames_before + 25, 30, "frames after outage")

        # 4. metrics report reconnects and drops
        text = _get(f"http://127.0.0.1:{metrics_port}/metrics")[1]
        assert 'streamer_reconnects_total{camera="door"} 1.0' in text or \
            'streamer_reconnects_total{camera="door"} 2.0' in text, text
        assert 'streamer_frames_dropped_total{camera="door",reason="input_queue"}' in text
        assert 'streamer_latency_seconds{camera="door",quantile="0.95"}' in text
        frames_last_seen = _health(metrics_port)["door"]["frames_out"]
    finally:
        # 5. SIGTERM finalizes the recordings
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    segments = sorted(rec.glob("door-*.mp4"))
    assert len(before_outage) >= 1 and len(segments) > len(before_outage), (before_outage, segments)
    counts = [_decode_count(p) for p in segments]
    assert all(n > 0 for n in counts), dict(zip(segments, counts))
    # every frame sent out, before and after the outage, is in the recording (the segment
    # open at the outage holds frames from both sides, so count over all segments)
    assert sum(counts) >= frames_last_seen > frames_before + 25


def test_json_logs_one_object_per_line_with_camera_events(tmp_path):
    """``--log-format json``: every stderr line is a JSON object; a dead camera's failure and
    retries carry ``camera``/``url`` and ``event`` fields a log collector can filter on."""
    url = f"rtsp://127.0.0.1:{free_port()}/none"
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(yaml.safe_dump({"server": {"metrics_port": -1, "connect_timeout": 1, "backoff_initial": 0.2,
                                              "backoff_max": 0.5},
                                   "cameras": [{"name": "dead", "input": url, "record": str(tmp_path / "rec")}]}))
    proc = subprocess.run([sys.executable, "-m", "streamer.cli", "serve", "--config", str(cfg), "--duration", "3",
                           "--log-format", "json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr  # no camera delivered a frame
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in lines), lines
    events = {e.get("event") for e in lines}
    assert {"camera_failed", "input_retry", "summary"} <= events, lines
    failed = next(e for e in lines if e.get("event") == "camera_failed")
    assert failed["camera"] == "dead" and failed["level"] == "error" and "cannot connect" in failed["message"]
    retry = next(e for e in lines if e.get("event") == "input_retry")
    assert (retry["camera"], retry["url"]) == ("dead", url) and retry["delay_s"] > 0
    summary = next(e for e in lines if e.get("event") == "summary")
    assert summary["cameras"]["dead"]["state"] == "failed"


def test_a_dead_camera_url_given_to_anonymize_ends_with_one_clear_error(tmp_path):
    """``streamer anonymize rtsp://dead out`` gives up after server.startup_timeout with the reason;
    ``serve`` (startup_timeout 0 by default) keeps retrying, as the test above shows."""
    url = f"rtsp://127.0.0.1:{free_port()}/none"
    cfg = tmp_path / "give-up.yaml"
    cfg.write_text(yaml.safe_dump({"server": {"metrics_port": -1, "connect_timeout": 1, "backoff_initial": 0.2,
                                              "startup_timeout": 2}}))
    start = time.monotonic()
    proc = run_cli("anonymize", url, str(tmp_path / "rec"), "-c", str(cfg), timeout=120)
    assert proc.returncode == 3 and time.monotonic() - start < 60, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("streamer: error: no camera sent a frame within 2 s") and "cannot connect" in last, last
    serve = tmp_path / "serve.yaml"
    serve.write_text(yaml.safe_dump({"server": {"metrics_port": -1, "connect_timeout": 1},
                                     "cameras": [{"name": "dead", "input": url, "record": str(tmp_path / "rec")}]}))
    proc = run_cli("serve", "--config", str(serve), "--startup-timeout", "1", timeout=120)
    assert proc.returncode == 3 and "no camera sent a frame within 1 s (dead: " in proc.stderr, proc.stderr


@pytest.mark.parametrize("scheme", ["rtsps", "udp"])
def test_every_live_url_is_run_as_a_camera(tmp_path, scheme):
    """TLS cameras (rtsps://) and encoders sending UDP are live like rtsp://: retried,
    recorded in segments. Until 2026-11-26 the quick form took only rtsp:// and rtmp:// as cameras and
    read the others as one video file (an rtsps:// camera failed at once, with no retry)."""
    port = free_port()
    url = {"rtsps": f"rtsps://127.0.0.1:{port}/cam", "udp": f"udp://127.0.0.1:{port}"}[scheme]
    cfg = tmp_path / "give-up.yaml"
    cfg.write_text(yaml.safe_dump({"server": {"metrics_port": -1, "connect_timeout": 1, "backoff_initial": 0.2,
                                              "startup_timeout": 2}}))
    proc = run_cli("anonymize", url, str(tmp_path / "rec"), "-c", str(cfg), timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("streamer: error: no camera sent a frame within 2 s")
    assert "retrying in" in proc.stderr


def test_a_recording_folder_that_goes_away_costs_recorded_frames_not_the_camera(tmp_path, face_clip,
                                                                                rtsp_server_factory,
                                                                                publisher_factory):
    """The share a camera records to is unmounted (here: its folder replaced by a file) and comes
    back. Meanwhile the camera keeps streaming, the frames not recorded are counted, and recording
    resumes in new segments; every segment, before and after, plays. (On the code before, the first
    failed write stopped the camera for good, its other outputs too.)"""
    source = rtsp_server_factory()
    publisher_factory(face_clip.path, source.publish_url("cam"))
    rec, unmounted = tmp_path / "rec", tmp_path / "rec-unmounted"
    proc, port = start_serve(tmp_path, [
        {"name": "door", "input": source.play_url("cam"), "transport": "udp",
         "record": {"dir": str(rec), "segment_seconds": 1}},
    ], stall_seconds=2, connect_timeout=3, backoff_initial=0.3, backoff_max=1.0)
    try:
        _wait(lambda: len(list(rec.glob("door-*.mp4"))) >= 2, 60, "two recorded segments")
        rec.rename(unmounted)
        rec.write_text("the share is not mounted")
        _wait(lambda: _health(port)["door"]["dropped"]["record"] > 10, 30, "frames not recorded")
        frames_in = _health(port)["door"]["frames_in"]
        _wait(lambda: _health(port)["door"]["frames_in"] > frames_in + 25, 30, "frames while not recording")
        door = _health(port)["door"]
        assert door["state"] == "streaming" and "Not a directory" in door["failing_outputs"]["record"], door
        assert _get(f"http://127.0.0.1:{port}/health")[0] == 503  # an operator's check sees it
        assert 'streamer_output_failing{camera="door",output="record"} 1.0' in _get(
            f"http://127.0.0.1:{port}/metrics")[1]
        rec.unlink()
        rec.mkdir()
        _wait(lambda: len(list(rec.glob("door-*.mp4"))) >= 2, 30, "recording resumed")
        _wait(lambda: _get(f"http://127.0.0.1:{port}/health")[0] == 200, 10, "health back to 200")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"recording camera door in {rec} failed" in err and "retrying in" in err, err
    before, after = sorted(unmounted.glob("door-*.mp4")), sorted(rec.glob("door-*.mp4"))
    assert len(before) >= 2 and len(after) >= 2
    counts = {path.name: _decode_count(path) for path in before + after}
    assert all(n > 0 for n in counts.values()), counts


def test_a_recording_folder_that_cannot_be_made_is_one_error_at_start(tmp_path):
    """A camera's record folder under a file (a typo, a share not mounted on a path that is a file) is
    the config's error: one line naming the camera, at once, before connecting to any camera (it used
    to surface only when the first frame came, as that camera stopping while the others ran on)."""
    (tmp_path / "recordings").write_text("a file, not a folder")
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(yaml.safe_dump({"server": {"metrics_port": -1}, "cameras": [
        {"name": "door", "input": f"rtsp://127.0.0.1:{free_port()}/none", "record": str(tmp_path / "recordings" / "door")},
    ]}))
    started = time.monotonic()
    proc = run_cli("serve", "--config", str(cfg), timeout=60)
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"streamer: error: camera door: cannot create recording folder {tmp_path / 'recordings' / 'door'}: " \
           "Not a directory" in proc.stderr
    assert time.monotonic() - started < 30


def test_a_camera_given_a_video_file_name_records_segments_named_after_it(tmp_path, long_face_clip,
                                                                          gst_rtsp_server_factory):
    """``streamer anonymize rtsp://cam out.mp4`` records ``out-<start>-00000.mp4``, ... beside it (it used
    to make a folder named out.mp4); the recording plays. (The quick form reads RTSP over TCP: the
    GStreamer server.)"""
    server = gst_rtsp_server_factory(play={"cam": long_face_clip})
    out = tmp_path / "out.mp4"
    record_with_quick_form(tmp_path, server.url("cam"), out, min_bytes=50_000)
    assert not out.exists(), "a folder or file named out.mp4"
    segments = sorted(tmp_path.glob("out-*-00000.mp4"))
    assert len(segments) == 1, sorted(p.name for p in tmp_path.iterdir())
    assert _decode_count(segments[0]) >= 25


def test_camera_passwords_never_reach_logs_health_or_the_summary(tmp_path, face_clip, rtsp_server_factory,
                                                                 publisher_factory):
    """Camera and server URLs carry credentials (``rtsp://admin:pass@...``, ``?token=``): JSON logs (messages
    and ``url`` fields), ``/health`` and the final summary show ``admin:***@`` instead. They used to show
    the password in every retry line, in ``/health`` and in the error that ends ``streamer anonymize``."""
    source = rtsp_server_factory()
    publisher_factory(face_clip.path, source.publish_url("cam"))
    dead = f"rtsp://admin:s3cret@127.0.0.1:{free_port()}/none?channel=1&token=t0ken"
    proc, port = start_serve(tmp_path, [
        {"name": "dead", "input": dead, "record": str(tmp_path / "dead")},
        {"name": "door", "input": source.play_url("cam"), "transport": "udp",
         "output": f"rtsp://pub:pa55@127.0.0.1:{free_port()}/door", "record": str(tmp_path / "door")},
    ], "--log-format", "json", stall_seconds=2, connect_timeout=2, backoff_initial=0.2, backoff_max=0.5)
    try:
        _wait(lambda: proc.poll() is None and "publish" in _health(port)["door"]["failing_outputs"]
              and _health(port)["dead"]["state"] == "failed", 60, "a failing camera and a failing output")
        health = _get(f"http://127.0.0.1:{port}/health")[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    for secret in ("s3cret", "t0ken", "pa55"):
        assert secret not in health and secret not in err, secret
    assert "rtsp://admin:***@127.0.0.1" in health, health
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    retry = next(e for e in lines if e.get("event") == "input_retry")
    assert retry["url"].startswith("rtsp://admin:***@127.0.0.1:") and retry["url"].endswith("?channel=1&token=***")
    assert "?channel=1&token=***: cannot connect" in retry["message"], retry
    publish = next(e for e in lines if e.get("event") == "publish_retry")
    assert publish["url"].startswith("rtsp://pub:***@127.0.0.1:") and "rtsp://pub:***@" in publish["message"]
