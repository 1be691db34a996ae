"""A Keras model or SavedModel run by TensorFlow Lite's interpreter, checked against TensorFlow at load.

Why: for small models TensorFlow's per-call overhead dominates (the example CNN: 1.6-2.6 ms for one
image through a `tf.function`, about 0.3 ms in the interpreter with XNNPACK kernels), and the model
server's single-image latency is mostly that overhead.

Faithfulness is checked, not assumed: the converted model runs a probe batch and must give
TensorFlow's outputs (to float32 rounding, see `RTOL`); its outputs are matched to TensorFlow's
by value, so their order in the flatbuffer does not matter. Anything else raises `LiteUnfaithful`
and the caller stays on TensorFlow.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

RTOL, ATOL = 1e-3, 1e-4
"""How close the interpreter's outputs must be to TensorFlow's on the probe (XNNPACK reorders float
sums: the example differs by about 2e-6)."""


class LiteUnfaithful(Exception):
    """The model cannot be converted, or its converted form does not answer like TensorFlow."""


def _interpreter_class() -> Any:
    """LiteRT's interpreter when installed (TensorFlow's is deprecated in its favour), else TensorFlow's."""
    with contextlib.suppress(ImportError):
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    import tensorflow as tf

    interpreter = getattr(getattr(tf, "lite", None), "Interpreter", None)
    if interpreter is None:
        raise LiteUnfaithful("this TensorFlow has no tf.lite.Interpreter and ai-edge-litert is not installed")
    return interpreter


@contextlib.contextmanager
def _quiet() -> Any:
    """The converter exports a SavedModel on the way and prints its endpoints and a line per captured
    variable to stdout; a service's log keeps the one line this module writes instead."""
    noisy = [logging.getLogger(name) for name in ("tensorflow", "absl")]
    levels = [logger.level for logger in noisy]
    for logger in noisy:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(noisy, levels, strict=True):
            logger.setLevel(level)


def cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a Kubernetes CPU limit
    shows all the node's cores to `os.cpu_count()`; threads beyond the quota only get throttled)."""
    try:
        available = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            available = min(available, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota readable: the affinity stands
    return available


CACHE_FORMAT = "1"
"""Part of every cache key: bump it when what is converted for the same model changes."""


def cache_file(model_file: Path, *, outputs: str, directory: Path | None = None) -> Path | None:
    """Where the converted form of `model_file` (a .keras file or a SavedModel folder) is cached: keyed by
    the model's bytes, the outputs served (`outputs`: e.g. the embedding layer's name), TensorFlow's
    version and `CACHE_FORMAT`, so a changed model or TensorFlow never reads a stale conversion.

    The folder: `directory`, else $SEISMO_TFLITE_CACHE_DIR, else $XDG_CACHE_HOME/seismo/tflite (~/.cache).
    `SEISMO_TFLITE_CACHE_DIR=off` turns the cache off. None when the model cannot be read."""
    setting = os.environ.get("SEISMO_TFLITE_CACHE_DIR", "")
    if directory is None and setting.lower() in {"off", "none", "0", "false"}:
        return None
    import tensorflow as tf

    digest = hashlib.sha256(f"{CACHE_FORMAT}\0{tf.__version__}\0{outputs}\0".encode())
    try:
        files = sorted(p for p in model_file.rglob("*") if p.is_file()) if model_file.is_dir() else [model_file]
        for path in files:
            digest.update(str(path.relative_to(model_file)).encode() if model_file.is_dir() else b"")
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    except OSError:
        return None
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "seismo" / "tflite"
    folder = directory or (Path(setting) if setting else home)
    return folder / f"{digest.hexdigest()[:32]}.tflite"


def _write_quietly(path: Path, data: bytes) -> None:
    """Atomically (a reader never sees half a file); a read-only or full disk only costs the next load a
    conversion, so it is logged, not raised."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError as problem:
        log.info("TensorFlow Lite conversion cache not written (%s): the next load converts again", problem)


class LiteFunction:
    """Call with a float32 batch; returns the outputs in TensorFlow's order. Safe from several threads
    (the interpreter is not, so calls take turns; the model server calls from one batching thread)."""

    def __init__(self, interpreter: Any, input_index: int, output_indices: list[int]):
        self._interpreter = interpreter
        self._input = input_index
        self._outputs = output_indices
        self._shape: tuple[int, ...] | None = None
        self._lock = threading.Lock()

    @classmethod
    def convert(cls, converter: Callable[[], Any], probe: np.ndarray, expected: list[np.ndarray], threads: int | None = None,
                cache: Path | None = None) -> LiteFunction:
        """Run the converter `converter()` makes (a `tf.lite.TFLiteConverter` for a model with one float input
        and an open batch dimension) and check that on `probe` the result gives `expected`, TensorFlow's own
        outputs, in that order.

        Converters are made from the Keras model or the SavedModel folder: one made from a traced
        `tf.function` over a Keras model (`from_concrete_functions`) loses the batch-norm variables and
        answers NaN, which this check is there to catch.

        `cache`: a file for the converted model (see `cache_file`). Converting costs seconds per load; a
        cached flatbuffer is read instead, and passes the same check as a fresh one (one that fails it is
        converted again and replaced)."""
        if cache is not None and cache.is_file():
            with contextlib.suppress(OSError, LiteUnfaithful, ValueError, RuntimeError):
                function = cls._checked(cache.read_bytes(), probe, expected, threads)
                log.info("TensorFlow Lite model read from the conversion cache %s", cache)
                return function
            log.warning("cached TensorFlow Lite model %s is unreadable or unfaithful: converting again", cache)
        try:
            with _quiet():
                flatbuffer = converter().convert()
        except Exception as problem:  # the converter raises many kinds (ConverterError, ValueError, ...)
            raise LiteUnfaithful(f"conversion failed: {type(problem).__name__}: {str(problem)[:300]}") from None
        function = cls._checked(flatbuffer, probe, expected, threads)
        if cache is not None:
            _write_quietly(cache, flatbuffer)
        return function

    @classmethod
    def _checked(cls, flatbuffer: bytes, probe: np.ndarray, expected: list[np.ndarray], threads: int | None) -> LiteFunction:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's own deprecation notice, once per load
            interpreter = _interpreter_class()(model_content=flatbuffer, num_threads=threads or cores())
        inputs = interpreter.get_input_details()
        if len(inputs) != 1:
            raise LiteUnfaithful(f"the converted model has {len(inputs)} inputs; one is supported")
        outputs = interpreter.get_output_details()
        function = cls(interpreter, inputs[0]["index"], [o["index"] for o in outputs])
        answers = function(probe)
        matched: list[int] = []
        for number, want in enumerate(expected):
            found = [i for i, got in enumerate(answers)
                     if i not in matched and got.shape == want.shape and np.allclose(got, want, rtol=RTOL, atol=ATOL)]
            if not found:
                worst = min((float(np.abs(got - want).max()) for got in answers if got.shape == want.shape), default=None)
                raise LiteUnfaithful(f"output {number} {list(want.shape)} has no match in the converted model"
                                     + (f" (closest differs by {worst:.3g})" if worst is not None else " (no output of that shape)"))
            matched.append(found[0])
        function._outputs = [function._outputs[i] for i in matched]
        log.info("converted to TensorFlow Lite (%d kB, %d threads), outputs match TensorFlow's on %d probe rows",
                 len(flatbuffer) // 1024, threads or cores(), len(probe))
        return function

    MAX_ROWS = 64
    """Rows per interpreter call. The interpreter keeps the memory planned for the largest batch it ran:
    one request of 4,096 images would pin about 1.6 GB for the example CNN until the process ends, so
    bigger batches run in chunks of this size (no slower per image: a batch of 64 already fills the cores)."""

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if len(batch) > self.MAX_ROWS:
            parts = [self._run(batch[i:i + self.MAX_ROWS]) for i in range(0, len(batch), self.MAX_ROWS)]
            return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        interpreter = self._interpreter
        with self._lock:
            if batch.shape != self._shape:
                # Planning a new batch size costs about 0.25 ms; the batcher's sizes repeat, so it is rare per call.
                interpreter.resize_tensor_input(self._input, batch.shape)
                interpreter.allocate_tensors()
                self._shape = batch.shape
            interpreter.set_tensor(self._input, batch)
            interpreter.invoke()
            return [interpreter.get_tensor(index) for index in self._outputs]
