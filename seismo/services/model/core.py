"""The model server's core (`seismo serve model`): the data plane (seismo.serving.dataplane) as a
Service, with the Open Inference Protocol's gRPC transport started beside it when a port is set."""

from __future__ import annotations

from typing import Any

from seismo.services.base import Service
from seismo.serving.dataplane import DataPlane


class ModelService(DataPlane, Service):
    name = "model"
    _grpc: Any = None

    async def start(self) -> None:
        await super().start()
        settings = self.settings
        if settings.grpc_port is not None:
            from seismo.serving.grpc_v2 import start_grpc_server  # grpcio only where gRPC is served

            self._grpc = await start_grpc_server(self, settings.host, settings.grpc_port, settings.max_body_bytes,
                                                 settings.grpc_max_concurrent_rpcs)

    def count_rejected(self, reason: str) -> None:
        # The feedback route's refusals, beside the predictions' answers (code 413 over the body limit, else 400).
        self.metrics.requests.labels(self.predictor.info.name, "feedback", "413" if reason == "too_large" else "400").inc()

    async def stop(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(grace=5)  # answers in flight finish; their events reach the sender's queue
            self._grpc = None
        await super().stop()
