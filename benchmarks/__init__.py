"""Benchmarks: `streamer bench` (cli.py) and standalone measurement scripts."""
