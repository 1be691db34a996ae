"""The model behind the HTTP routes: input checks and adaptive batching around a runtime.

Concurrent requests are batched into one forward pass (up to `max_batch_size` rows, waiting at most
`max_batch_wait` for company), which is where a small CNN gets its throughput on two cores.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from seismo.batching import ThreadBatcher, split_rows
from seismo.protocol.payloads import PayloadError, Tensor
from seismo.serving.runtimes import Runtime, TensorSpec

_NUMERIC = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"}


class Predictor:
    def __init__(self, runtime: Runtime, registry: CollectorRegistry, max_batch_size: int = 64, max_batch_wait: float = 0.002):
        self.runtime = runtime
        self.info = runtime.info
        self.input_spec: TensorSpec = runtime.info.inputs[0]
        # `classes`, or scikit-learn's `class_names` (what the tabular example's metadata.json writes)
        self.classes: list[str] | None = runtime.info.metadata.get("classes") or runtime.info.metadata.get("class_names")
        self.batch_sizes = Histogram(
            "seismo_model_batch_size", "Rows per forward pass", ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=registry,
        )
        self.inference_seconds = Histogram(
            "seismo_model_inference_seconds", "Time of one forward pass", ["model"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1), registry=registry,
        )
        self.embedding = runtime.embedding
        self.executions = self.rows = 0
        self._batcher: ThreadBatcher[np.ndarray, tuple[np.ndarray, np.ndarray | None]] = ThreadBatcher(
            self._run_batch, max_batch_size, max_batch_wait, name="inference", size_of=len
        )

    def stopped(self) -> list[str]:
        return self._batcher.stopped()

    def start(self) -> None:
        self._batcher.start()

    async def stop(self) -> None:
        await self._batcher.close()

    @property
    def output_names(self) -> list[str]:
        names = [self.info.outputs[0].name]
        if self.classes:
            names.append("class")
        return names

    def _run_batch(self, arrays: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        embedding = None
        with self.inference_seconds.labels(self.info.name).time():
            if self.embedding is not None:
                out, embedding = self.runtime.predict_with_embedding(batch)
            else:
                out = self.runtime.predict(batch)
        self.batch_sizes.labels(self.info.name).observe(len(batch))
        self.executions += 1  # Triton's statistics (GET /v2/models/{m}/stats)
        self.rows += len(batch)
        return list(zip(split_rows(out, arrays), split_rows(embedding, arrays), strict=True))

    def check(self, array: np.ndarray, name: str) -> np.ndarray:
        """The array as the model takes it, or PayloadError naming what does not fit."""
        expected = self.input_spec.shape
        if array.ndim != len(expected) or any(e not in (-1, a) for a, e in zip(array.shape[1:], expected[1:])):
            raise PayloadError(
                f"input {name!r} has shape {list(array.shape)} but model {self.info.name!r} expects {list(expected)}"
                " (first dimension: batch)"
            )
        if array.shape[0] == 0:
            raise PayloadError(f"input {name!r} has no instances")
        if array.dtype.kind not in "biuf":
            raise PayloadError(f"input {name!r} must be numeric, got {array.dtype}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise PayloadError(f"input {name!r} contains NaN or infinity")
        return array

    def pick_v2_input(self, tensors: list[Tensor]) -> Tensor:
        """The tensor the model consumes: the one named like its input, or the only one given."""
        for tensor in tensors:
            if tensor.name == self.input_spec.name:
                chosen = tensor
                break
        else:
            if len(tensors) != 1:
                names = [t.name for t in tensors]
                raise PayloadError(f"model {self.info.name!r} takes input {self.input_spec.name!r}; request has {names}")
            chosen = tensors[0]
        if chosen.datatype not in _NUMERIC:
            raise PayloadError(f"input {chosen.name!r} has datatype {chosen.datatype}; model expects {self.input_spec.datatype}")
        return chosen

    async def predict(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The model's output for `array`, and its embedding when the model emits one."""
        return await self._batcher.submit(array)

    def named_outputs(self, probabilities: np.ndarray, requested: list[str] | None,
                      embedding: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The V2 outputs asked for (all but the embedding when none are named: clients get it by asking)."""
        available = {self.info.outputs[0].name: probabilities}
        if self.classes:
            available["class"] = probabilities.argmax(axis=-1).astype(np.int64)
        if not requested:
            return available
        if embedding is not None and self.embedding is not None:
            available[self.embedding.output] = embedding
        unknown = [n for n in requested if n not in available]
        if unknown:
            raise PayloadError(f"unknown outputs {unknown}; model {self.info.name!r} has {list(available)}")
        return {n: available[n] for n in requested}
