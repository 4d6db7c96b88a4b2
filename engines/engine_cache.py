"""On-disk cache of built engines (TensorRT plans), safe against crashes and concurrent builders.

An entry is one file ``<model>-<key digest>.engine`` holding a small header
(magic, the full cache key, payload size and SHA-256) followed by the
serialized engine. On load the header is checked against the expected key and
the payload against its hash; a missing, corrupt or mismatched file is
rebuilt. Writes go to a temp file in the same folder that is fsynced and then
renamed over the target with ``os.replace`` (atomic on POSIX), so no reader
ever sees half an engine. Builders take an exclusive ``fcntl.flock`` on a
per-entry lock file and re-check the cache after getting it, so two processes
asking for the same engine build it once and neither sees a torn file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import struct
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger(__name__)

MAGIC = b"STRMENG1"
_HEADER_LEN = struct.Struct("<I")


@dataclass(frozen=True)
class CacheKey:
    """Everything a built engine depends on; any change means a rebuild.

    Attributes:
        model_sha256: SHA-256 of the model file (ONNX) the engine is built from.
        trt_version: TensorRT version string.
        gpu_name: GPU name as reported by the driver.
        compute_capability: e.g. ``9.0``.
        precision: ``fp16`` or ``fp32``.
        profile: canonical text of the optimization profiles (shapes).
    """

    model_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: str

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON of all key fields."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def filename(self, model: str) -> str:
        """Cache file name for ``model`` under this key."""
        return f"{model}-{self.digest()[:20]}.engine"


def default_cache_dir() -> Path:
    """``$STREAMER_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/streamer/engines`` (``~/.cache/...``)."""
    env = os.environ.get("STREAMER_ENGINE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamer" / "engines"


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def pack_entry(key: CacheKey, payload: bytes) -> bytes:
    """Header + payload, as stored on disk."""
    header = json.dumps({"key": asdict(key), "size": len(payload),
                         "sha256": hashlib.sha256(payload).hexdigest()}, sort_keys=True).encode()
    return MAGIC + _HEADER_LEN.pack(len(header)) + header + payload


def unpack_entry(data: bytes, key: CacheKey) -> tuple[bytes | None, str]:
    """Return (payload, "ok") when ``data`` is a valid entry for ``key``, else (None, why not)."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _HEADER_LEN.size:
        return None, "not an engine cache file"
    (hlen,) = _HEADER_LEN.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + _HEADER_LEN.size
    try:
        header = json.loads(data[start:start + hlen])
    except ValueError:
        return None, "corrupt header"
    if not isinstance(header, dict) or header.get("key") != asdict(key):
        return None, "built for a different model/TensorRT/GPU/precision/profile"
    payload = data[start + hlen:]
    if len(payload) != header.get("size") or hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        return None, "corrupt or truncated payload"
    return payload, "ok"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    Temp file in the same folder, fsync, ``os.replace``, fsync of the folder.
    The temp file is removed if anything fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created if needed) for the ``with`` block."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_entry(path: str | os.PathLike, key: CacheKey) -> tuple[bytes | None, str]:
    """Read and validate the cache file at ``path``; (payload or None, reason)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None, "not cached yet"
    return unpack_entry(data, key)


def load_or_build(cache_dir: str | os.PathLike, model: str, key: CacheKey,
                  build: Callable[[], bytes]) -> tuple[bytes, bool]:
    """Return (engine bytes, built_now) for ``model`` under ``key``, building and caching on a miss.

    ``build()`` runs at most once per key across processes sharing
    ``cache_dir``; its result is stored atomically.
    """
    path = Path(cache_dir) / key.filename(model)
    payload, why = read_entry(path, key)
    if payload is not None:
        log.debug("engine cache hit: %s", path)
        return payload, False
    with file_lock(path.with_name(path.name + ".lock")):
        payload, why = read_entry(path, key)  # another process may have built it while we waited
        if payload is not None:
            return payload, False
        log.info("building engine %s (%s); this can take minutes", path.name, why)
        payload = build()
        atomic_write_bytes(path, pack_entry(key, payload))
        return payload, True
