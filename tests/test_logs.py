"""Log setup: records go to the stderr of the moment, in text or JSON."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from streamer.logs import setup_logging


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    streamer_level = logging.getLogger("streamer").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("streamer").setLevel(streamer_level)


def test_records_follow_a_replaced_stderr(monkeypatch, restore_logging):
    """A stderr closed after setup (pytest capture, a host application) must not break logging."""
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    setup_logging("text")
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("streamer.test").warning("camera door: cannot connect")
    assert second.getvalue() == "streamer: warning: camera door: cannot connect\n"


def test_json_lines_carry_extra_fields(monkeypatch, restore_logging):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    setup_logging("json")
    logging.getLogger("streamer.live").info("reconnected", extra={"camera": "door", "event": "input_reconnected"})
    entry = json.loads(out.getvalue())
    assert (entry["level"], entry["camera"], entry["event"], entry["message"]) == (
        "info", "door", "input_reconnected", "reconnected")


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="log format must be one of"):
        setup_logging("xml")
