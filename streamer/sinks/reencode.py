"""Re-encode a stream that the output container cannot hold as it is: audio, text subtitles.

Streams beside the video are copied packet for packet whenever the output
container takes their codec. Where it does not (a DVR's G.711 A-law or PCM
audio into an MP4, AAC into a WebM, Opus into an AVI; SRT subtitles into an
MP4 or a WebM), leaving them out or refusing the job would both lose what the
user asked for; FFmpeg's command line re-encodes such streams with the
container's own codec, and so does this module.

- Audio: the container's default (AAC for MP4/MOV, MP3 for AVI, AC-3 for
  Matroska, MP2 for MPEG-TS, Opus for WebM), else AAC, else Opus; same
  channels, same sample rate where the encoder has it, timestamps kept.
- Text subtitles (SRT, ASS, WebVTT, MP4's mov_text): the container's text
  format (mov_text for MP4/MOV, WebVTT for WebM, ASS for Matroska), same
  times. Picture subtitles (DVD, Blu-ray, DVB) cannot become text.

Example:
    >>> import av                                                    # doctest: +SKIP
    >>> out = av.open("out.mp4", "w")                                # doctest: +SKIP
    >>> audio = AudioReencoder(out, av.open("dvr.avi").streams.audio[0])  # doctest: +SKIP
    >>> audio.codec                                                  # doctest: +SKIP
    'aac'
"""

from __future__ import annotations

import io
import logging
from fractions import Fraction

import av
import numpy as np

from streamer.errors import OutputError, describe_error

log = logging.getLogger(__name__)

#: Text subtitle formats of containers whose default subtitle codec FFmpeg leaves unset.
TEXT_SUBTITLE_CODECS = {"mp4": "mov_text", "mov": "mov_text", "ipod": "mov_text", "3gp": "mov_text"}
#: Encoders tried after the container's default audio codec, in order.
FALLBACK_AUDIO_ENCODERS = ("aac", "libopus")
#: Layout names for a channel count whose channels the input left unnamed ("1 channels").
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 6: "5.1", 8: "7.1"}
#: Bit rate per channel (bits per second), at most; lower for low sample rates (see :func:`audio_bit_rate`).
_BIT_RATE_PER_CHANNEL = 64000


class AudioReencoder:
    """Decodes one input audio stream's packets and encodes them for ``container``.

    Args:
        container: the output (opened for writing, header not yet written).
        stream: the input audio stream (its packets are decoded with its own decoder).

    Attributes:
        codec: the encoder chosen (e.g. ``aac``).
        output: the new audio stream of ``container``.

    Raises:
        OutputError: no encoder available here can write this audio into this container.
    """

    def __init__(self, container, stream) -> None:
        self.input = stream
        channels = stream.codec_context.channels
        self.layout = layout_name(stream.codec_context.layout.name, channels)
        self.codec, self.rate = pick_audio_encoder(container.format.name, container.default_audio_codec,
                                              self.layout, stream.codec_context.sample_rate)
        self.output = container.add_stream(self.codec, rate=self.rate, layout=self.layout)
        self.output.bit_rate = audio_bit_rate(self.rate, channels)
        self.output.disposition = stream.disposition

    def encode(self, packet: av.Packet, shift: int = 0) -> list[av.Packet]:
        """Decode one input packet and return the output packets it completes.

        Args:
            packet: a packet of the input stream.
            shift: ticks of the packet's time base taken off every timestamp
                (the output's start, see ``StreamInfo.start``).
        """
        try:
            frames = packet.decode()
        except (av.FFmpegError, ValueError) as exc:  # a damaged packet: its few ms of sound are skipped
            log.debug("audio packet not decodable: %s", describe_error(exc))
            return []
        return self._encode(frames, shift)

    def flush(self, shift: int = 0) -> list[av.Packet]:
        """Drain the decoder and the encoder at the end of the stream."""
        try:
            frames = self.input.codec_context.decode(None)
        except (av.FFmpegError, ValueError):
            frames = []
        return self._encode(frames, shift) + list(self.output.encode(None))

    def _encode(self, frames: list, shift: int) -> list[av.Packet]:
        packets = []
        for frame in frames:
            if frame.pts is not None and shift:
                frame.pts -= shift
            if frame.layout.name != self.layout:  # unnamed channels ("1 channels"): the same, named
                frame = _relabelled(frame, self.layout)
            packets.extend(self.output.encode(frame))
        return packets


def layout_name(name: str, channels: int) -> str:
    """``name``, or the usual layout for ``channels`` when the input left its channels unnamed."""
    return _DEFAULT_LAYOUTS.get(channels, name) if name.endswith("channels") else name


def audio_bit_rate(rate: int, channels: int) -> int:
    """Bits per second for ``channels`` of audio at ``rate`` samples per second: 64 kbit/s a channel,
    less at low rates (AAC cannot spend more than 6 bits a sample; 4 leaves room)."""
    return min(_BIT_RATE_PER_CHANNEL, 4 * rate) * channels


def pick_audio_encoder(format_name: str, default: str | None, layout: str, rate: int) -> tuple[str, int]:
    """(encoder, sample rate) of the first encoder that writes ``layout`` audio into ``format_name``.

    The sample rate is ``rate`` (samples per second) where the encoder has it,
    else the nearest higher one it has (its highest if none is higher).
    """
    tried = []
    for name in dict.fromkeys([default, *FALLBACK_AUDIO_ENCODERS]):
        if not name:
            continue
        try:
            codec = av.codec.Codec(name, "w")
        except (av.FFmpegError, ValueError):  # not in this FFmpeg build
            continue
        rates = sorted(codec.audio_rates or [rate])
        chosen = rate if rate in rates else next((r for r in rates if r > rate), rates[-1])
        problem = _trial(format_name, codec.name, layout, chosen)
        if problem is None:
            return codec.name, chosen
        tried.append(f"{codec.name}: {problem}")
    raise OutputError(f"the {format_name} container cannot hold the input's audio and no audio encoder here "
                      f"writes it ({'; '.join(tried) or 'none found'}); choose another extension (.mkv holds "
                      f"nearly all)")


def _trial(format_name: str, codec: str, layout: str, rate: int) -> str | None:
    """Why ``codec`` audio cannot be written into a ``format_name`` container (None: it can), found by
    encoding a tenth of a second of silence into an in-memory file."""
    try:
        with av.open(io.BytesIO(), mode="w", format=format_name) as trial:
            stream = trial.add_stream(codec, rate=rate, layout=layout)
            channels = len(stream.layout.channels)
            silence = av.AudioFrame.from_ndarray(np.zeros((1, rate // 10 * channels), np.int16), format="s16",
                                                 layout=layout)
            silence.sample_rate, silence.pts, silence.time_base = rate, 0, Fraction(1, rate)
            for packets in (stream.encode(silence), stream.encode(None)):
                trial.mux(packets)
    except (av.FFmpegError, ValueError, OSError) as exc:
        return describe_error(exc)
    return None


def _relabelled(frame: av.AudioFrame, layout: str) -> av.AudioFrame:
    """The same samples with their channels named ``layout`` (same channel count)."""
    array = frame.to_ndarray()
    out = av.AudioFrame.from_ndarray(array, format=frame.format.name, layout=layout)
    out.sample_rate, out.pts, out.time_base = frame.sample_rate, frame.pts, frame.time_base
    return out


class SubtitleReencoder:
    """Decodes one input text subtitle stream's packets and encodes them in ``container``'s text format.

    Args:
        container: the output (opened for writing, header not yet written).
        stream: the input subtitle stream.

    Attributes:
        codec: the encoder (``mov_text``, ``webvtt``, ``ass``).
        output: the new subtitle stream of ``container``.

    Raises:
        OutputError: the stream holds pictures, not text, or the container has no text subtitle format.
    """

    def __init__(self, container, stream) -> None:
        decoder = stream.codec_context
        if not decoder or not decoder.codec.properties & av.codec.codec.Properties.TEXT_SUB.value:
            raise OutputError(f"subtitle stream {stream.index} holds pictures, which cannot become text")
        codec = TEXT_SUBTITLE_CODECS.get(container.format.name, container.default_subtitle_codec)
        if not codec or codec == "none":
            raise OutputError(f"the {container.format.name} container has no text subtitle format")
        self.input, self.codec = stream, codec
        decoder.open()  # text decoders make the ASS header every text encoder starts from
        self.output = container.add_stream(codec)
        self.output.codec_context.subtitle_header = decoder.subtitle_header
        self.output.time_base = self.output.codec_context.time_base = stream.time_base
        self.output.disposition = stream.disposition

    def encode(self, packet: av.Packet, shift: int = 0) -> list[av.Packet]:
        """The output packet of one input packet (none for an undecodable one); ``shift`` ticks of the
        packet's time base are taken off its time (the output's start, see ``StreamInfo.start``)."""
        try:
            subtitles = self.input.codec_context.decode2(packet)
            if subtitles is None:
                return []
            out = self.output.codec_context.encode_subtitle(subtitles)
        except (av.FFmpegError, ValueError) as exc:
            log.debug("subtitle packet not converted: %s", describe_error(exc))
            return []
        out.stream = self.output
        out.pts = out.dts = None if packet.pts is None else packet.pts - shift
        out.duration, out.time_base = packet.duration, packet.time_base
        return [out]

    def flush(self, shift: int = 0) -> list[av.Packet]:
        """Nothing: subtitle codecs hold nothing back (the same interface as :class:`AudioReencoder`)."""
        return []
