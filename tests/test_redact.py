"""URL credentials masked wherever streamer shows a URL (streamer.redact, the log handler)."""

from __future__ import annotations

import json
import logging

import pytest

from streamer.logs import setup_logging
from streamer.redact import redact, redact_value


@pytest.mark.parametrize(("text", "shown"), [
    ("rtsp://admin:s3cret@10.0.0.5:554/Streaming/Channels/101", "rtsp://admin:***@10.0.0.5:554/Streaming/Channels/101"),
    ("rtsp://admin:p@ss:w0rd@cam.local/live", "rtsp://admin:***@cam.local/live"),  # '@' and ':' in the password
    ("rtmp://a.example/live?key=abc&quality=hd", "rtmp://a.example/live?key=***&quality=hd"),
    ("'rtsp://u:p@h/x?PassWord=q': refused", "'rtsp://u:***@h/x?PassWord=***': refused"),
    ("https://b.s3.amazonaws.com/v.mp4?X-Amz-Credential=AK%2F1&X-Amz-Date=2026&X-Amz-Signature=9f: 404",
     "https://b.s3.amazonaws.com/v.mp4?X-Amz-Credential=***&X-Amz-Date=2026&X-Amz-Signature=***: 404"),
    ("rtsp://cam/live?channel=2&api_key=k1&sig=s2", "rtsp://cam/live?channel=2&api_key=***&sig=***"),
    ("rtsp://viewer@cam/live", "rtsp://viewer@cam/live"),          # no password: nothing hidden
    ("/recordings/door:cam@2/a=b.mp4", "/recordings/door:cam@2/a=b.mp4"),  # not a URL
])
def test_passwords_and_token_values_are_masked_and_nothing_else(text, shown):
    assert redact(text) == shown


def test_nested_values_are_masked():
    value = {"detail": "rtsp://a:b@h/x", "outputs": ["rtsp://c:d@h/y", 3], "n": 1}
    assert redact_value(value) == {"detail": "rtsp://a:***@h/x", "outputs": ["rtsp://c:***@h/y", 3], "n": 1}


def test_the_log_handler_masks_messages_fields_and_tracebacks(capsys):
    setup_logging("json")
    log = logging.getLogger("streamer.test")
    try:
        raise ValueError("cannot open rtsp://admin:s3cret@10.0.0.5/x")
    except ValueError:
        log.error("camera %s: %s", "door", "rtsp://admin:s3cret@10.0.0.5/x", exc_info=True,
                  extra={"url": "rtsp://admin:s3cret@10.0.0.5/x", "event": "camera_failed"})
    setup_logging("text")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = json.loads(line)
    assert "s3cret" not in line
    assert entry["message"] == "camera door: rtsp://admin:***@10.0.0.5/x"
    assert entry["url"] == "rtsp://admin:***@10.0.0.5/x" and "admin:***@" in entry["exception"]
