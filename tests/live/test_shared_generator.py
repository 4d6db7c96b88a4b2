"""Two cameras in gan mode, one process: one face generator serves both, faces of both batched; with
the GPU (torch) compositor, one shared compositor takes both cameras' frames in one call.

Real RTSP servers and a real H.264 stream; the generator has fixed-seed random weights (the
same network and cost as trained ones), so a face comes out as noise and the detector must
not find it in the published streams.
"""

from __future__ import annotations

import numpy as np

from streamer.config import config_from_dict, load_config
import pytest

from streamer.live.batcher import CameraAnonymizer, CameraCompositor
from streamer.live.server import LiveServer
from streamer.live.settings import parse_live
from test_live import _read_frames, _wait


@pytest.mark.parametrize("compositor", ["numpy", "torch"])
def test_cameras_in_gan_mode_share_one_generator(tmp_path, monkeypatch, face_clip, rtsp_server_factory,
                                                 publisher_factory, compositor):
    from engines.generator import use_generator_weights
    from streamer.factory import build_detector, gan_key

    monkeypatch.setenv("STREAMER_GENERATOR_WEIGHTS", "")  # restored after the test; set just below
    use_generator_weights("random", tmp_path)
    source, sink = rtsp_server_factory(), rtsp_server_factory()
    publisher_factory(face_clip.path, source.publish_url("cam"))
    config = config_from_dict({
        "detector": {"input_width": 640}, "encoder": {"preset": "ultrafast", "crf": 28},
        "anonymizer": {"mode": "gan"}, "pipeline": {"device": "cpu", "threads": 1, "compositor": compositor},
        "server": {"metrics_port": -1, "queue_size": 2, "batch_window_ms": 20},
        "cameras": [{"name": name, "input": source.play_url("cam"), "transport": "udp",
                     "output": sink.publish_url(name), "output_transport": "udp"} for name in ("a", "b")]})
    settings, specs = parse_live(config)
    server = LiveServer(config, specs, settings).start()
    try:
        _wait(lambda: all(w.stats.frames_out > 10 for w in server.workers.values()), 90, "frames from both")
        out = {name: _read_frames(sink.play_url(name), 10) for name in ("a", "b")}
    finally:
        server.shutdown()

    if compositor == "numpy":  # one generator, and both cameras' compositors use it through their own view
        assert list(server.generators) == [gan_key(config)] and not server.compositors
        generator = server.generators[gan_key(config)]
        views = [w.compositor.anonymizer for w in server.workers.values()]
        assert all(isinstance(v, CameraAnonymizer) and v.shared is generator for v in views)
        assert generator.items >= 20 and generator.calls <= generator.items
    else:  # one compositor (holding the one generator) takes both cameras' frames
        assert list(server.gan_models) == [gan_key(config)] and len(server.compositors) == 1 and not server.generators
        shared = next(iter(server.compositors.values()))
        views = [w.compositor for w in server.workers.values()]
        assert all(isinstance(v, CameraCompositor) and v.shared is shared for v in views)
        assert shared.compositor.anonymizer is server.gan_models[gan_key(config)]
        assert shared.items >= 20 and shared.calls <= shared.items
    for worker in server.workers.values():
        assert worker.run_stats.anonymized["gan"] > 10, worker.run_stats.anonymized

    # the published streams show no face
    detector = build_detector(load_config(None))
    for name, frames in out.items():
        found = [int((d.scores > 0.5).sum()) for d in detector(frames)]
        assert len(frames) == 10 and sum(found) <= 1, (name, found)
    assert np.mean([f.mean() for f in out["a"]]) > 20  # real pictures, not black frames
