"""A video given as an HTTP(S) URL (a web server, an S3 presigned link) is anonymized like a file, and
the link's signature is not printed."""

from __future__ import annotations

import functools
import io
import os
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import pytest

from tests.conftest import run_cli


class _RangeHandler(SimpleHTTPRequestHandler):
    """Serves files with byte ranges, as S3, nginx and CDNs do (FFmpeg seeks with them: an MP4 whose
    index is at its end cannot be read without); quiet."""

    def log_message(self, *args) -> None:
        pass

    def send_head(self):
        path = self.translate_path(self.path)  # the query string is left out
        if not os.path.isfile(path):
            self.send_error(404, "Not Found")
            return None
        size = os.path.getsize(path)
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        start = int(wanted[1]) if wanted else 0
        end = int(wanted[2]) if wanted and wanted[2] else size - 1
        if start >= size:
            self.send_error(416, "Range Not Satisfiable")
            return None
        self.send_response(206 if wanted else 200)
        if wanted:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        with open(path, "rb") as file:
            file.seek(start)
            return io.BytesIO(file.read(end - start + 1))


@pytest.fixture
def web_server(small_clip):
    """A real HTTP server (with byte ranges) on 127.0.0.1 serving the folder of ``small_clip``; yields its
    base URL."""
    handler = functools.partial(_RangeHandler, directory=str(Path(small_clip.path).parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


SIGNATURE = "X-Amz-Credential=AKIA0000%2F20261126&X-Amz-Signature=9f86d081884c7d659a2feaa0c55ad015"


def test_a_presigned_link_is_anonymized_in_full_and_its_signature_never_printed(tmp_path, small_clip, web_server):
    url = f"{web_server}/{Path(small_clip.path).name}?{SIGNATURE}"
    out = tmp_path / "out.mp4"
    proc = run_cli("anonymize", url, str(out), "--config", "benchmark")
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == len(small_clip.pts)
    assert "9f86d081" not in proc.stderr and "AKIA0000" not in proc.stderr
    assert "X-Amz-Signature=***" in proc.stderr  # the summary names the input

    missing = run_cli("anonymize", f"{web_server}/gone.mp4?{SIGNATURE}", str(tmp_path / "gone.mp4"))
    assert missing.returncode == 3 and "Traceback" not in missing.stderr
    last = missing.stderr.strip().splitlines()[-1]
    assert last.startswith("streamer: error: http://127.0.0.1:") and "404 Not Found" in last, last
    assert "9f86d081" not in missing.stderr and "X-Amz-Signature=***" in last
