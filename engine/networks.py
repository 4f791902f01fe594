"""The networks a search runs, the backbone and the detector, as ONNX Runtime graphs: a searching process never
imports torch.

torch builds each network (``engine.backbones``, ``engine.detector_graph``) and ``engine.export`` writes it once
as an ONNX file in ``MODEL_CACHE``, in a child process, so that this one stays without torch: on this machine's
build torch alone is ~530 MB resident (its CUDA libraries load without a GPU), more than the rest of the app.
ONNX Runtime runs the same graphs in a third of the memory and, on two cores, in 0.66x (the backbone at 640 px)
to 0.9x (the detector) of torch's time (benchmarks/README.md, "ONNX Runtime").

On a CPU with VNNI the backbone runs in 8 bits after its first stages (``uses_int8``): its graph is quantised from
the float one by ``engine.quantise``, in another child process, once.

Each network is loaded as immich's models are (``engine.models.shared``): on first use, once per process,
under a lock; a missing file is exported then. A thread's work runs on ``use_threads`` threads: one session
per thread count, because a session's thread pool is fixed when it is made.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from engine.backbone_specs import BackboneSpec, get_spec, lite_weights_package, REGISTRY
from engine.catalogue import BUNDLED_CATALOGUE
from engine.models import ModelUnavailableError, shared

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
MODEL_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "models"
# Part of every exported file's name: raise it when engine.export writes other graphs.
EXPORT_VERSION = 1
# Inputs whose sides are multiples of this run one graph of any size: every stride-2 layer then sees an even
# side, so TensorFlow's "SAME" padding is the same for all of them (engine.export). Other sizes get a graph each.
ANY_SIZE_MULTIPLE = 32

# Images per network pass. On this CPU the backbone embeds one or two 224 px images at 12-12.5 ms an image on one
# thread against 14.6 ms in passes of 16 (a small pass's maps stay in the core's cache; benchmarks/README.md,
# "Indexing: two images a pass"); a GPU is kept busy by large passes.
CPU_BATCH = 2
GPU_BATCH = 64
_threads = threading.local()
_helpers = ThreadPoolExecutor(max_workers=CORES, thread_name_prefix="beside", initializer=lambda: use_threads(1))
Result = TypeVar("Result")


def use_threads(count: int) -> None:
    """Run this thread's network passes on ``count`` threads, other threads' left as they are."""
    _threads.count = max(1, count)


def thread_count() -> int:
    """The threads this thread's network passes run on (all cores unless ``use_threads`` said otherwise)."""
    return getattr(_threads, "count", CORES)


def beside(function: Callable[..., Result], *args) -> Future[Result]:
    """``function(*args)`` on another core while this thread goes on with its own (numpy) work, its network passes
    on one thread there; or here, at once, where this thread's passes have one core only (two searches side by
    side each have one: a third thread would only slow them)."""
    if thread_count() > 1:
        return _helpers.submit(function, *args)
    done: Future[Result] = Future()
    try:
        done.set_result(function(*args))
    except BaseException as error:  # handed over as a helper thread's would be, by result()
        done.set_exception(error)
    return done


def export_command(kind: str, name: str, shape: tuple[int, int] | None, path: Path) -> list[str]:
    """The child process that writes network ``name``'s graph to ``path`` (see ``engine.export``)."""
    command = [sys.executable, "-m", "engine.export", kind, name, str(path)]
    return command + (["--shape", f"{shape[0]}x{shape[1]}"] if shape else [])


def quantise_command(name: str, float_graph: Path, path: Path) -> list[str]:
    """The child process that writes backbone ``name``'s 8-bit graph to ``path`` from ``float_graph``
    (see ``engine.quantise``)."""
    return [sys.executable, "-m", "engine.quantise", name, str(float_graph), str(path)]


def _exported(kind: str, name: str, fingerprint: str, shape: tuple[int, int] | None, int8: bool = False) -> Path:
    """The ONNX file of network ``name`` for inputs of ``shape`` (None: sides multiples of 32), exported if missing;
    if ``int8``, its 8-bit graph, quantised from the float one. Written under a temporary name and renamed, so a
    crash or a second process never leaves half a file."""
    precision = "|int8" if int8 else ""
    digest = hashlib.blake2b(f"{EXPORT_VERSION}|{kind}|{name}|{fingerprint}{precision}".encode(),
                             digest_size=8).hexdigest()
    size = f"{shape[0]}x{shape[1]}" if shape else "any"
    path = MODEL_CACHE / f"{name}{'-int8' if int8 else ''}-{size}-{digest}.onnx"
    if path.is_file():
        return path
    try:
        MODEL_CACHE.mkdir(parents=True, exist_ok=True)
        scratch = tempfile.TemporaryDirectory(dir=MODEL_CACHE)
    except OSError as error:
        raise ModelUnavailableError(f"cannot write the {name} network's graph to {MODEL_CACHE} ({error}); make "
                                    "that folder writable") from error
    with scratch as folder:
        partial = Path(folder) / path.name
        command = (quantise_command(name, _exported(kind, name, fingerprint, shape), partial) if int8
                   else export_command(kind, name, shape, partial))
        done = subprocess.run(command, capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
        if done.returncode != 0 or not partial.is_file():
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelUnavailableError(f"cannot export the {name} network to {path} ({reason}); run make run to "
                                        "install the requirements")
        os.replace(partial, path)
    return path


class Network:
    """One exported graph, input "x" [N, 3, H, W] float32, run by ONNX Runtime; sessions made on first use.
    ``export`` gives the graph's file, writing it where it is missing."""

    def __init__(self, export: Callable[[], Path]):
        self._export = export
        self.path = export()
        self._sessions: dict[int, object] = {}
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs for ``batch``, on this thread's ``thread_count()`` threads."""
        return self._session(thread_count()).run(None, {"x": np.ascontiguousarray(batch, dtype=np.float32)})

    def _session(self, threads: int):
        with self._lock:
            if threads not in self._sessions:
                self._sessions[threads] = self._load(threads)
            return self._sessions[threads]

    def _load(self, threads: int):
        """A session on ``threads`` threads; a damaged file (a disk error, a copy cut short) is exported again."""
        import onnxruntime
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidProtobuf

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: a spinning pool takes the cores from the other lane's search
        # and from the search's own numpy work between passes (benchmarks/README.md, "ONNX Runtime").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return onnxruntime.InferenceSession(str(self.path), options, providers=_providers())
        except (Fail, InvalidProtobuf):
            self.path.unlink(missing_ok=True)
            self.path = self._export()
        try:
            return onnxruntime.InferenceSession(str(self.path), options, providers=_providers())
        except (Fail, InvalidProtobuf) as error:
            raise ModelUnavailableError(f"ONNX Runtime cannot load {self.path} ({error})") from error


def pass_size() -> int:
    """How many images a network pass takes at a time: ``GPU_BATCH`` on a GPU, else ``CPU_BATCH``."""
    return GPU_BATCH if _providers()[0] == "CUDAExecutionProvider" else CPU_BATCH


def _providers() -> list[str]:
    """A GPU where this ONNX Runtime build has one and the process may use it (a Ray GPU worker), else the CPU."""
    import onnxruntime

    wanted = ["CUDAExecutionProvider"] if os.environ.get("CUDA_VISIBLE_DEVICES") else []
    return [p for p in wanted if p in onnxruntime.get_available_providers()] + ["CPUExecutionProvider"]


def cpu_has_vnni(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this x86 CPU multiplies 8-bit integers in one instruction (AVX-512 VNNI or AVX-VNNI), where ONNX
    Runtime's 8-bit kernels beat its float ones (benchmarks/README.md, "The backbone in 8 bits")."""
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def uses_int8(spec: BackboneSpec, setting: str | None = None) -> bool:
    """Whether backbone ``spec`` runs in 8 bits in this process: ``setting`` (default ``FURNITURE_INT8``) "on",
    "off", or "auto": an EfficientNet-Lite on a CPU with VNNI, where the bundled catalogue is there to calibrate it.
    The two graphs' embeddings agree to a cosine of ~0.998, so a store built with one is searched with the other."""
    setting = (setting or os.environ.get("FURNITURE_INT8", "auto")).lower()
    if setting not in ("auto", "on", "off"):
        raise ModelUnavailableError(f"FURNITURE_INT8 is {setting!r}; set it to auto, on or off")
    if REGISTRY[spec.name].family != "efficientnet_lite" or setting == "off":
        return False
    return setting == "on" or (_providers()[0] == "CPUExecutionProvider" and cpu_has_vnni()
                               and BUNDLED_CATALOGUE.is_dir())


class Backbone:
    """A registry backbone as the search runs it: feature maps and embeddings of numpy batches (``engine.images``'
    ``preprocess``), computed by its exported graph, in 8 bits where ``uses_int8``."""

    def __init__(self, spec: BackboneSpec, int8: bool = False):
        self.spec = spec
        self.int8 = int8

    def _network(self, height: int, width: int) -> Network:
        shape = None if height % ANY_SIZE_MULTIPLE == 0 and width % ANY_SIZE_MULTIPLE == 0 else (height, width)
        return shared(("network", self.spec.name, shape, self.int8), lambda: Network(functools.partial(
            _exported, "backbone", self.spec.name, _weights_fingerprint(self.spec.name), shape, self.int8)))

    def feature_map(self, batch: np.ndarray) -> np.ndarray:
        """The ``spec.layer`` map [N, C, h, w] of a batch [N, 3, H, W]."""
        return self._network(*batch.shape[2:]).run(batch)[0]

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Embeddings [N, feature_dim], ``spec.layer`` pooled with ``spec.pooling``, not L2-normalised."""
        return pool_features(self.feature_map(batch), self.spec.pooling)


GEM_P = 3.0  # pool_features cubes by two products: change both together
GEM_EPS = 1e-6


def pool_features(fmap: np.ndarray, pooling: str) -> np.ndarray:
    """Pool a feature map [N, C, h, w] over space into [N, C]: "avg" the mean, "max" the maximum, "gem" the
    generalised mean with p = 3 (between the two; common in image retrieval)."""
    if pooling == "avg":
        return fmap.mean(axis=(2, 3), dtype=np.float32)
    if pooling == "max":
        return fmap.max(axis=(2, 3))
    if pooling == "gem":
        # Clamp because the p-th root of a negative mean is undefined. Cubed by two products: numpy's power runs
        # at half their speed (0.7 against 0.36 ms a pass of 2 at 224 px), within 1e-7 of it.
        clamped = np.maximum(fmap, GEM_EPS)
        cubed = clamped * clamped
        cubed *= clamped
        return (cubed.mean(axis=(2, 3), dtype=np.float32) ** (1.0 / GEM_P)).astype(np.float32)
    raise ValueError(f"unknown pooling {pooling!r}; expected 'avg', 'gem' or 'max'")


def _weights_fingerprint(name: str) -> str:
    """What identifies the weights a backbone's graph was exported from, read without torch."""
    if REGISTRY[name].family == "efficientnet_lite":
        package = lite_weights_package(name)
        try:
            return f"{package} {importlib.metadata.version(package.replace('_', '-'))}"
        except importlib.metadata.PackageNotFoundError:
            return f"{package} missing"
    return "torch hub"


def load_backbone(name: str) -> Backbone:
    """The process's backbone ``name`` (ValueError for names not in the registry)."""
    spec = get_spec(name)
    return shared(("backbone", name), lambda: Backbone(spec, uses_int8(spec)))


def detector_network(path: Path) -> Network:
    """The detector's graph (``engine.detector``), exported from its stored operations at ``path``."""
    fingerprint = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    return Network(functools.partial(_exported, "detector", "detector", fingerprint, None))
