"""CPU per event post: Seismo's lean HTTP/1.1 client against aiohttp, same events, same broker, same loop.

A real broker (delivering to a real logger) receives each example prediction's request and response
events as one batch, posted one at a time, as the model server's event logger posts them at low load.
The two clients take turns in rounds of `--per-round` posts on uvloop (the services' loop), so both
see the same machine; the figure is the load generator's own CPU per post (the client's cost), and
the ratio of the medians.

    python -m bench.http_client [--rounds 8] [--per-round 100]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import orjson
import uvloop

from bench.common import example_bodies, save
from seismo.local import LocalStack, free_ports
from seismo.protocol.cloudevents import BATCH_CONTENT_TYPE, to_batch
from seismo.serving.prediction_events import Answered, EventSource, kserve_events
from seismo.transport.poster import EventPoster


def batches(n: int) -> list[bytes]:
    origin = EventSource("http://bench", "image-classifier", "1", "default", "default")
    response = orjson.dumps({"predictions": [[0.1] * 10]})
    bodies = example_bodies(200)
    return [to_batch(kserve_events(origin, Answered(f"bench-{i}", "v1", 200, bodies[i % len(bodies)][1], "application/json",
                                                    response, "application/json"), {}, {}))
            for i in range(n)]


async def cpu_per_post(url: str, lean: bool, payloads: list[bytes]) -> float:
    async with EventPoster(lean=lean) as poster:
        await poster.post(url, {"content-type": BATCH_CONTENT_TYPE}, payloads[0], 30)  # connect outside the figure
        started = time.process_time()
        for body in payloads[1:]:
            answer = await poster.post(url, {"content-type": BATCH_CONTENT_TYPE}, body, 30)
            if answer.status >= 300:
                raise RuntimeError(f"the broker answered {answer.status}: {answer.body[:200]!r}")
        return (time.process_time() - started) / (len(payloads) - 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=100)
    args = parser.parse_args()
    payloads = batches(args.rounds * 2 * args.per_round)
    lean_us, aiohttp_us = [], []
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(Path(tmp), ports=free_ports(), services=("logger", "broker"))
        stack.start()
        try:
            url = stack.url("broker") + "/"
            for r in range(args.rounds):
                chunk = payloads[r * 2 * args.per_round:(r + 1) * 2 * args.per_round]
                order = ((True, lean_us), (False, aiohttp_us)) if r % 2 == 0 else ((False, aiohttp_us), (True, lean_us))
                for i, (lean, figures) in enumerate(order):
                    figures.append(uvloop.run(cpu_per_post(url, lean, chunk[i * args.per_round:(i + 1) * args.per_round])))
                print(f"  round {r + 1}/{args.rounds}: lean {lean_us[-1]:.0f} us, aiohttp {aiohttp_us[-1]:.0f} us per post", flush=True)
        finally:
            stack.stop()
    lean, aio = statistics.median(lean_us), statistics.median(aiohttp_us)
    save("http_client", {
        "posts_per_round": args.per_round, "rounds": args.rounds, "event_batch_bytes_median": int(statistics.median(map(len, payloads))),
        "lean_cpu_us_per_post_median": round(lean), "aiohttp_cpu_us_per_post_median": round(aio),
        "ratio_lean_vs_aiohttp": round(lean / aio, 2),
        "lean_rounds": [round(x) for x in lean_us], "aiohttp_rounds": [round(x) for x in aiohttp_us],
    })


if __name__ == "__main__":
    main()
