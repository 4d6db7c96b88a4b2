"""Tests of the face generator (engines/generator, streamer/stages/gan.py)."""
