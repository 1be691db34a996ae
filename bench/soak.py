"""Soak: mixed traffic with hostile requests while the broker and the logger are killed (SIGKILL) and
restarted at random and the logger's deliveries fail at random; then every accepted prediction must
have its complete record, the number without one must be exactly what the model server's drop
counters say, and every process's memory must stay bounded.

    python -m bench.soak [--seconds 120] [--rate 40] [--seed 0] [--path-attacks]

`--path-attacks` mixes in, every few seconds, what once starved or lost predictions: a forged 30 MiB
request event straight to the broker (too large for every subscriber once batched: dead-lettered), a
29 MiB binary REST body and an 8 MiB typed gRPC request (both over what the event path carries: the
model server must refuse them up front, never answer them and lose their events).

Prints a JSON summary (also written to bench/results/soak.json): predictions answered, records
complete, drops by reason, kills, and RSS per service over time (first, max, last).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seismo.local import LocalStack, free_ports
from seismo.topology import EXAMPLE_MODEL

MODEL = "image-classifier"
SERVICES = ("logger", "outlier", "drift", "broker", "model")
RESULTS = Path(__file__).resolve().parent / "results"


def counter(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class FlakyLogger:
    """In front of the real logger: fails a share of deliveries at random (503), forwards the rest."""

    def __init__(self, target: str, fail_share: float, rng: random.Random):
        self.target, self.fail_share, self.rng, self.failed = target, fail_share, rng, 0

    def app(self) -> Starlette:
        import contextlib

        client: httpx.AsyncClient | None = None

        @contextlib.asynccontextmanager
        async def lifespan(app):
            nonlocal client
            async with httpx.AsyncClient(timeout=30) as client:
                yield

        async def handle(request: Request) -> Response:
            body = await request.body()
            if self.rng.random() < self.fail_share:
                self.failed += 1
                return Response(b"failing at random", status_code=503)
            try:
                upstream = await client.post(self.target + request.url.path, content=body,
                                             headers={k: v for k, v in request.headers.items() if k.lower() != "host"})
            except httpx.HTTPError:
                return Response(b"logger down", status_code=503)
            return Response(upstream.content, status_code=upstream.status_code, headers=dict(upstream.headers))

        return Starlette(routes=[Route("/{path:path}", handle, methods=["POST"])], lifespan=lifespan)


def hostile(client: httpx.Client, model_url: str, rng: random.Random) -> int:
    choice = rng.randrange(4)
    if choice == 0:
        return client.post(f"{model_url}/v2/models/{MODEL}/infer", json={"id": "a\nb", "inputs": []}).status_code
    if choice == 1:
        return client.post(f"{model_url}/v1/models/{MODEL}:predict", content=b"[" * 500).status_code
    if choice == 2:
        return client.post(f"{model_url}/v1/models/junk-{rng.random()}:predict", json={"instances": [[1]]}).status_code
    return client.post(f"{model_url}/v2/models/{MODEL}/infer", json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [0, 10**30], "data": []}]}).status_code


MIB = 1024 * 1024


def path_attack(client: httpx.Client, stack: LocalStack, rng: random.Random, number: int, stub) -> tuple[str, int]:
    """One of the three path attacks (in turn); (what, the status or gRPC code it got)."""
    kind = ("forged_event", "rest_binary", "grpc_typed")[number % 3]
    if kind == "forged_event":
        headers = {"ce-specversion": "1.0", "ce-id": f"forged-{number}", "ce-source": "http://forger/", "content-type": "application/json",
                   "ce-type": "org.kubeflow.serving.inference.request", "ce-inferenceservicename": MODEL}
        body = b'{"instances": [[' + b"0.5," * (30 * MIB // 4 - 8) + b'0.5]]}'
        return kind, client.post(f"{stack.url('broker')}/", headers=headers, content=body).status_code
    if kind == "rest_binary":
        header = json.dumps({"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [2500, 32, 32, 3],
                                         "parameters": {"binary_data_size": 2500 * 3072 * 4}}]}).encode()
        body = header + np.zeros(2500 * 3072, dtype="<f4").tobytes()
        return kind, client.post(f"{stack.url('model')}/v2/models/{MODEL}/infer", content=body,
                                 headers={"content-type": "application/octet-stream", "inference-header-content-length": str(len(header))}).status_code
    import grpc

    from seismo.serving.proto import grpc_predict_v2_pb2 as pb

    values = np.random.default_rng(number).random(2_000_000, dtype=np.float32)
    tensor = pb.ModelInferRequest.InferInputTensor(name="input_1", datatype="FP32", shape=[len(values) // 3072, 32, 32, 3],
                                                   contents=pb.InferTensorContents(fp32_contents=values[: len(values) // 3072 * 3072]))
    try:
        stub.ModelInfer(pb.ModelInferRequest(model_name=MODEL, inputs=[tensor]), timeout=60)
        return kind, 200
    except grpc.RpcError as exc:
        return kind, exc.code().value[0]


def run(seconds: float, rate: float, seed: int, data_dir: Path, path_attacks: bool = False) -> dict:
    rng = random.Random(seed)
    images = np.load(EXAMPLE_MODEL / "reference.npy")
    ports = free_ports(SERVICES + ("flaky",))
    flaky = FlakyLogger(f"http://127.0.0.1:{ports['logger']}", 0.1, random.Random(seed + 1))
    proxy = uvicorn.Server(uvicorn.Config(flaky.app(), host="127.0.0.1", port=ports["flaky"], log_level="warning"))
    proxy_thread = threading.Thread(target=proxy.run, daemon=True)
    proxy_thread.start()
    while not proxy.started:
        time.sleep(0.01)
    env = {"SEISMO_LOGGER_URL": f"http://127.0.0.1:{ports['flaky']}", "SEISMO_BROKER_MAX_BACKOFF_SECONDS": "2"}
    grpc_port = free_ports(("grpc",))["grpc"] if path_attacks else None
    stack = LocalStack(data_dir, ports={k: v for k, v in ports.items() if k != "flaky"}, services=SERVICES, env=env, grpc_port=grpc_port)
    model_url, answered, hostile_statuses, kills = stack.url("model"), [], {}, []
    attacks: dict[str, dict[int, int]] = {}
    stub, channel = None, None
    rss: dict[str, list[int]] = {name: [] for name in SERVICES}
    try:
        stack.start()
        if path_attacks:
            import grpc

            from seismo.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc

            channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=[("grpc.max_send_message_length", 64 * MIB)])
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with httpx.Client(timeout=60) as client:
            started = time.monotonic()
            next_kill = started + rng.uniform(5, 15)
            next_attack, attack_number = started + 3, 0
            while time.monotonic() - started < seconds:
                if rng.random() < 0.1:
                    status = hostile(client, model_url, rng)
                    hostile_statuses[status] = hostile_statuses.get(status, 0) + 1
                else:
                    image = images[rng.randrange(len(images))]
                    r = client.post(f"{model_url}/v1/models/{MODEL}:predict", json={"instances": [image.tolist()]})
                    if r.status_code == 200:
                        answered.append(r.headers["x-prediction-id"])
                if path_attacks and time.monotonic() >= next_attack:
                    what, status = path_attack(client, stack, rng, attack_number, stub)
                    attacks.setdefault(what, {})[status] = attacks.setdefault(what, {}).get(status, 0) + 1
                    attack_number += 1
                    next_attack = time.monotonic() + rng.uniform(2, 6)
                if time.monotonic() >= next_kill:
                    victim = rng.choice(("broker", "logger"))
                    stack.kill_service(victim)
                    kills.append(victim)
                    time.sleep(rng.uniform(0.5, 3))
                    stack.start_service(victim)
                    stack.wait_ready(victim)
                    next_kill = time.monotonic() + rng.uniform(5, 15)
                if len(answered) % 50 == 0:
                    for name, process in stack.processes.items():
                        rss[name].append(rss_kib(process.process.pid))
                time.sleep(max(0.0, 1.0 / rate - 0.005))
        # Drain: everything accepted is delivered once the queues empty.
        # The backlog gauge is refreshed once a second and a retry may wait its backoff: empty twice in a
        # row, then records still missing get a grace period before they count as lost.
        deadline = time.monotonic() + 180
        dropped, empty_readings = 0.0, 0
        while time.monotonic() < deadline and empty_readings < 2:
            queued = counter(model_url, "seismo_model_event_queue_depth")
            backlog = counter(stack.url("broker"), "seismo_broker_backlog")
            dropped = counter(model_url, "seismo_model_events_dropped_total")
            empty_readings = empty_readings + 1 if queued == 0 and backlog == 0 else 0
            time.sleep(1.1)
        with httpx.Client(timeout=30) as client:
            def complete(pid: str) -> bool:
                r = client.get(f"{stack.url('logger')}/v1/records/{quote(pid, safe='')}")
                return r.status_code == 200 and r.json().get("request") is not None and r.json().get("response") is not None

            missing = [pid for pid in answered if not complete(pid)]
            grace = time.monotonic() + 60
            while missing and time.monotonic() < grace:
                time.sleep(1.0)
                missing = [pid for pid in missing if not complete(pid)]
        drops = {reason: counter(model_url, "seismo_model_events_dropped_total", reason=reason)
                 for reason in ("queue_full", "rejected", "shutdown", "unsendable")}
        broker_url = stack.url("broker")
        shed = counter(broker_url, "seismo_broker_retention_removed_total", what="dead_letters_shed")
        journal_bytes = counter(broker_url, "seismo_broker_journal_bytes")
        journal_full_refusals = counter(broker_url, "seismo_broker_events_rejected_total", reason="journal_full")
    finally:
        if channel is not None:
            channel.close()
        stack.stop()
        proxy.should_exit = True
        proxy_thread.join(15)
    return {
        "seconds": seconds, "predictions_answered": len(answered), "records_incomplete": len(missing), "incomplete_ids": missing[:10],
        "events_dropped": dropped, "drops_by_reason": drops, "hostile_answers": hostile_statuses, "kills": kills,
        "deliveries_failed_at_random": flaky.failed, "path_attacks": attacks, "dead_letters_shed": shed,
        "journal_bytes_at_end": journal_bytes, "journal_full_refusals": journal_full_refusals,
        "rss_kib": {name: {"first": v[0], "max": max(v), "last": v[-1]} for name, v in rss.items() if v},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second sent (one client)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--path-attacks", action="store_true", help="mix in forged oversized events and requests over the event path's limit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seismo-soak-") as tmp:
        summary = run(args.seconds, args.rate, args.seed, Path(tmp), args.path_attacks)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
