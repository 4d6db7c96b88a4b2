"""A one-client RTMP server (FFmpeg's own RTMP listen mode) that saves what it receives.

Usage: python rtmp_receiver.py rtmp://127.0.0.1:PORT/app/stream OUT.flv

Accepts one publisher, copies its video and audio packets unchanged into OUT.flv, and exits
when the publisher disconnects (the file is finalized). Prints "listening"
just before it starts to listen.
"""

from __future__ import annotations

import sys

import av


def main(url: str, out_path: str) -> int:
    """Receive one RTMP publication into ``out_path``; returns the number of video packets."""
    print("listening", flush=True)
    packets = 0
    with av.open(url, options={"listen": "1"}, timeout=(30, 10)) as source, \
            av.open(out_path, mode="w", format="flv") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams if s.type in ("video", "audio")}
        try:
            for packet in source.demux(*[source.streams[i] for i in streams]):
                if packet.dts is None:
                    continue
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
                packets += packet.stream.type == "video"
        except (av.FFmpegError, OSError):
            pass  # the publisher hung up: FFmpeg's RTMP server reports it as an I/O error
    print(f"received {packets}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
