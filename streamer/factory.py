"""Builds the pipeline's stages from a Config (the one place that wires backends to stages)."""

from __future__ import annotations

import logging
import os

from engines.select import cpu_runtime, select_backend
from streamer.config import Config, ConfigError, env_switch
from streamer.stages.anonymizers import Anonymizer
from streamer.stages.compositor import Compositor
from streamer.stages.detector import CenterFaceDetector

log = logging.getLogger(__name__)


def build_detector(config: Config, cpu_runtime_name: str | None = None,
                   max_batch: int | None = None) -> CenterFaceDetector:
    """Create the face detector on the backend chosen for ``config.pipeline.device``.

    CPU: ONNX Runtime or PyTorch FP32 (``cpu_runtime_name``, else
    ``$STREAMER_CPU_RUNTIME``, else the measured-faster default). GPU: a
    TensorRT FP16 engine from the engine cache (built on first use), or
    PyTorch FP16 channels-last with CUDA graphs. The choice and its reason are
    logged.

    Args:
        config: the run's configuration.
        cpu_runtime_name: ``onnxruntime`` or ``torch`` on the CPU (default: see above).
        max_batch: most frames per call, for a detector shared by several streams (calls of 1 to
            ``max_batch`` frames). None: a file pipeline's detector, whose calls all hold
            :func:`frames_per_batch` frames but the last; with CUDA graphs that last one is padded to
            the full batch, so one graph is captured (and one set of convolutions autotuned) instead
            of one per power of two below it (seconds each at 1920x1088 on an H100).
    """
    choice = select_backend(config.pipeline.device)
    if choice.name == "cpu":
        runtime = cpu_runtime(cpu_runtime_name)
        log.info("backend: cpu/%s (%s)", runtime, choice.reason)
        if runtime == "onnxruntime":
            return CenterFaceDetector(config.detector, threads=config.pipeline.threads)
        from engines.centerface_torch import load_centerface_torch
        from engines.torch_runner import TorchRunner

        runner = TorchRunner(load_centerface_torch(), "cpu", threads=config.pipeline.threads)
        return CenterFaceDetector(config.detector, runner=runner)
    log.info("backend: %s (%s)", choice.name, choice.reason)
    if choice.name == "torch-cuda":
        from engines.centerface_torch import load_centerface_torch
        from engines.torch_runner import TorchRunner, buckets_up_to

        buckets = buckets_up_to(max_batch) if max_batch else (frames_per_batch(config),)
        return CenterFaceDetector(config.detector, runner=TorchRunner(load_centerface_torch(), "cuda",
                                                                      cuda_graphs=True, batch_buckets=buckets,
                                                                      name="detector"),
                                  stream=stage_stream("cuda"))
    from engines.engine_cache import default_cache_dir
    from engines.tensorrt_runner import tensorrt_runner_for

    spec, profiles = tensorrt_plan("centerface", config)
    return CenterFaceDetector(config.detector, runner=tensorrt_runner_for(spec, profiles, default_cache_dir()))


#: Smallest "largest batch" (frames) of the detector's TensorRT engine.
DETECTOR_ENGINE_MAX_BATCH = 32


def tensorrt_plan(model: str, config: Config, max_batch: int | None = None) -> tuple:
    """The model spec and TensorRT optimisation profiles of the engine the pipeline loads for ``model``
    under ``config``: what ``streamer engines build`` builds ahead of time, so the first run finds it cached.

    Args:
        model: ``centerface`` or ``generator``.
        config: the run's configuration (detector input width and batch, ``anonymizer.gan_mask_scale``).
        max_batch: largest batch (frames for the detector, faces for the generator); default what
            the pipeline uses.

    Raises:
        ConfigError: ``model`` is not one of the two.
    """
    from engines.export import CENTERFACE
    from engines.tensorrt_runner import detector_profiles_for_config
    from streamer.stages.gan import generator_engine_plan

    if model == "centerface":
        batch = max_batch or max(DETECTOR_ENGINE_MAX_BATCH, frames_per_batch(config))
        return CENTERFACE, detector_profiles_for_config(config.detector.input_width, batch)
    if model == "generator":
        return generator_engine_plan(config.anonymizer.gan_mask_scale, max_batch)
    raise ConfigError(f"no TensorRT engine for model {model!r}: centerface or generator")


def torch_device(config: Config) -> str:
    """``cuda`` when ``config.pipeline.device`` resolves to a GPU backend, else ``cpu``."""
    return "cpu" if select_backend(config.pipeline.device).name == "cpu" else "cuda"


#: Frames per batch on a GPU when ``detector.batch_size`` is 0 (auto). On the H100 (2026-11-27,
#: benchmarks/results/h100-session-2026-11-27.md; 1080p30, 4 faces, gan, ratios to the plain transcode in
#: the same run) the full pipeline on one stage thread ran at 1.19x with 8 frames per batch (83.5 vs 70.4
#: fps; steady 96.6 vs 75.9) against 0.94x with 1 (55.2 vs 58.6), and 8 frames per batch took the null
#: sink from 80-98 to 233-243 fps steady. On two stage threads both were slower (0.45x, 0.51x).
AUTO_BATCH_FRAMES_GPU = 8

#: Frames per batch on the CPU when ``detector.batch_size`` is 0 (auto): the CPU gains nothing measurable
#: from batching and needs more memory.
AUTO_BATCH_FRAMES_CPU = 1


def frames_per_batch(config: Config) -> int:
    """Frames per detector call and anonymizer batch: ``detector.batch_size``, or when that is 0
    (auto) :data:`AUTO_BATCH_FRAMES_GPU` on a GPU and :data:`AUTO_BATCH_FRAMES_CPU` on the CPU."""
    if config.detector.batch_size:
        return config.detector.batch_size
    return AUTO_BATCH_FRAMES_GPU if torch_device(config) == "cuda" else AUTO_BATCH_FRAMES_CPU


#: Environment variable that sets how many threads the model stages run on (1 or 2).
STAGE_THREADS_ENV = "STREAMER_STAGE_THREADS"


def stage_threads() -> int:
    """Threads the file pipeline's model stages run on: ``$STREAMER_STAGE_THREADS`` (1 or 2), else 1.

    Two threads let one batch's detection overlap the previous batch's tracking and anonymization, but
    were slower where measured: on the H100 (gan, full pipeline against the transcode, 2026-11-27: 0.45x
    on two threads against 1.19x on one with 8 frames per batch, 0.51x against 0.94x with 1) and on the
    2-core CPU, where the detector already uses every core
    (7-10 % slower, blur, 1080p30, 4 faces, ``streamer bench --device cpu --modes blur --seconds 4
    --no-deface``, alternated twice, 2026-11-26).

    Raises:
        ConfigError: the variable is set to anything but 1 or 2.
    """
    value = os.environ.get(STAGE_THREADS_ENV, "").strip()
    if value:
        if value not in ("1", "2"):
            raise ConfigError(f"{STAGE_THREADS_ENV} must be 1 or 2, got {value!r}")
        return int(value)
    return 1


#: Environment variable: 0 finishes each batch before the next one's detection starts.
DETECT_AHEAD_ENV = "STREAMER_DETECT_AHEAD"


def detect_ahead() -> bool:
    """Whether a file job on one stage thread starts a batch's detection before it finishes the previous
    batch (:class:`streamer.pipeline.Lookahead`): ``$STREAMER_DETECT_AHEAD`` (0 or 1), else no.

    Built so the GPU detects one batch while the host tracks and anonymizes the one before. Measured on
    the H100 (2026-11-27, two A/B runs of ``streamer bench --modes gan --batch-size 8 --seconds 15``,
    NVDEC, in both orders) it did not pay: null-sink steady fps 186 and 203 with it against 180 and 211
    without, the encoded file 80 and 88 against 94 and 97. So it is off by default; the output is the
    same either way. One batch more is in flight when it is on.

    Raises:
        ConfigError: the variable is set to anything but 0 or 1.
    """
    return env_switch(DETECT_AHEAD_ENV) is True


def pipeline_settings() -> dict[str, str]:
    """The environment settings that change how a file job runs on its threads and GPU, as in effect
    (defaults filled in), for benchmark records: ``{variable: value}``.

    Raises:
        ConfigError: one of them is set to a value it does not take.
    """
    from engines.torch_runner import CUDNN_AUTOTUNE_ENV, cudnn_autotune

    return {STAGE_THREADS_ENV: str(stage_threads()), DETECT_AHEAD_ENV: str(int(detect_ahead())),
            STAGE_STREAMS_ENV: str(int(bool(env_switch(STAGE_STREAMS_ENV)))),
            CUDNN_AUTOTUNE_ENV: str(int(cudnn_autotune()))}


#: Environment variable: 1 gives the detector and the GPU compositor each their own CUDA stream.
STAGE_STREAMS_ENV = "STREAMER_STAGE_STREAMS"


def stage_stream(device: str):
    """A new CUDA stream for one model stage on ``device`` when that is ``cuda`` and
    ``$STREAMER_STAGE_STREAMS`` is 1, else None (the stage runs on the calling thread's current stream,
    the default stream shared by every thread).

    On one shared stream, each stage's wait for its own results (the detector's download of its
    cells, a live camera's download of its frame) also waits for every batch the other stage queued
    meanwhile: the detector and the compositor of 16 streams, or of two stage threads, queue behind
    each other. Off by default until measured on a GPU (``benchmarks/h100/README.md``).

    Raises:
        ConfigError: the variable is set to anything but 0 or 1.
    """
    if not env_switch(STAGE_STREAMS_ENV) or device != "cuda":
        return None
    import torch

    return torch.cuda.Stream()


def uses_torch_compositor(config: Config) -> bool:
    """Whether :func:`build_compositor` builds the GPU (torch) compositor for ``config``:
    ``pipeline.compositor: torch``, or ``auto`` on a CUDA device."""
    requested = config.pipeline.compositor
    return requested == "torch" or (requested == "auto" and torch_device(config) == "cuda")


def build_compositor(config: Config, download: bool = True, anonymizer: Anonymizer | None = None) -> Compositor:
    """Create the anonymizer stage for ``config.anonymizer.mode``.

    ``gan`` loads the face generator (FP16 on CUDA, FP32 on the CPU); faces it
    cannot take (too small, no keypoints) go to ``anonymizer.fallback_mode``.
    Where: ``pipeline.compositor`` ``auto`` picks the GPU compositor
    (:class:`~streamer.stages.torch_compositor.TorchCompositor`) when the
    device is a CUDA GPU and the OpenCV one on the CPU; ``torch`` forces the
    GPU compositor on whatever device the pipeline uses (the CPU included).
    The choice is logged.

    Args:
        config: the run's configuration.
        download: GPU compositor only: put anonymized frames back into
            ``Frame.image`` (True), or leave them on the device for a sink
            that takes device frames (False).
        anonymizer: gan mode only: an already loaded generator to use (e.g.
            one shared by several cameras) instead of loading one.
    """
    requested = config.pipeline.compositor
    device = torch_device(config) if requested != "numpy" else "cpu"
    stream = stage_stream(device)  # checks $STREAMER_STAGE_STREAMS wherever the job runs
    use_torch = uses_torch_compositor(config)
    if config.anonymizer.mode != "gan":
        anonymizer = None
    elif anonymizer is None:
        anonymizer = build_gan(config)
    if not use_torch:
        log.info("compositor: numpy/OpenCV on the CPU (%s)", "pipeline.compositor: numpy" if requested == "numpy"
                 else "no CUDA device")
        return Compositor(config.anonymizer, anonymizer=anonymizer)
    from streamer.stages.torch_compositor import TorchCompositor

    log.info("compositor: torch on %s (%s)", device, "pipeline.compositor: torch" if requested == "torch"
             else "a CUDA device is in use")
    return TorchCompositor(config.anonymizer, device=device, anonymizer=anonymizer, download=download,
                           stream=stream)


def build_shared_generator(config: Config, window: float = 0.005):
    """One face generator for several streams (a :class:`~streamer.live.batcher.SharedAnonymizer`
    batching their faces), or None when ``config`` is not in gan mode.

    Args:
        config: the streams' configuration (mode, device, threads).
        window: seconds the generator waits for more faces once some arrived.
    """
    if config.anonymizer.mode != "gan":
        return None
    from streamer.live.batcher import SharedAnonymizer

    return SharedAnonymizer(build_gan(config), window=window)


def gan_key(config: Config) -> tuple:
    """What tells two configs' face generators apart: runs with equal keys can share one."""
    return config.pipeline.device, config.anonymizer.gan_mask_scale


def build_gan(config: Config):
    """The face generator (:class:`~streamer.stages.gan.GanAnonymizer`) ``config`` asks for:
    its device, CPU threads and ``anonymizer.gan_mask_scale``."""
    from streamer.stages.gan import build_gan_anonymizer

    return build_gan_anonymizer(config.pipeline.device, threads=config.pipeline.threads,
                                mask_scale=config.anonymizer.gan_mask_scale)


def build_source(path: str, config: Config):
    """Open a video file for decoding on the path ``config.pipeline.decoder`` and the machine allow.

    NVDEC (:class:`~streamer.sources.nvdec.NvdecSource`: frames decoded into
    GPU memory) when the pipeline's device is a CUDA GPU, PyNvVideoCodec is
    installed and NVDEC takes the stream's codec and pixel format; otherwise
    PyAV on the CPU, converting 4:2:0 frames to RGB on the GPU where the GPU
    compositor works (:class:`~streamer.sources.yuv_upload.YuvUploadSource`),
    else on the CPU (:class:`~streamer.sources.video_file.VideoFileSource`).
    The path and the reason are logged.

    Raises:
        InputError: the file cannot be opened.
        BackendError: ``decoder: nvdec`` (or ``device: cuda``) asked for but not usable.
    """
    from streamer.sources.nvdec import NvdecSource, is_interlaced, pynvvideocodec_status, select_decoder
    from streamer.sources.video_file import VideoFileSource
    from streamer.sources.yuv_upload import GPU_CONVERTED_PIX_FMTS, YuvUploadSource

    source = VideoFileSource(path)
    try:
        requested = config.pipeline.decoder
        gpu = requested != "cpu" and torch_device(config) == "cuda"
        library = pynvvideocodec_status() if requested != "cpu" and gpu else None
        pix_fmt = source.stream.codec_context.pix_fmt
        choice = select_decoder(requested, source.info.codec, pix_fmt, cuda=gpu, library_error=library,
                                interlaced=is_interlaced(source.stream.codec_context))
        if choice.name != "cpu":
            log.info("decode: %s (%s)", choice.name, choice.reason)
            return NvdecSource(path, container=source.container, info=source.info)
        if uses_torch_compositor(config) and pix_fmt in GPU_CONVERTED_PIX_FMTS:
            log.info("decode: cpu (%s); YUV to RGB on the %s", choice.reason, torch_device(config))
            return YuvUploadSource(path, torch_device(config), container=source.container, info=source.info)
        log.info("decode: cpu (%s)", choice.reason)
        return source
    except BaseException:
        source.close()
        raise
