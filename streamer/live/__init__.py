"""Live camera feeds: RTSP/RTMP in, anonymized RTSP/RTMP out and/or segmented recordings.

Modules: ``settings`` (cameras/server config), ``rtsp_source`` (reconnecting input),
``outputs`` (publisher, segment recorder), ``batcher`` (detector shared across
cameras), ``camera`` (one camera's threads), ``metrics`` (Prometheus + health),
``server`` (N cameras, one process), ``cli`` (``streamer serve``, ``run_urls``).
"""
