"""`seismo replay`: a saved drift detector run over stored records, in their original order and count windows.

Reproducibility: the records a window held and the detector that judged them are enough to get the same
answer again, so a drift alert can be re-examined (or a new detector tried on last month's traffic)
without replaying traffic through the services. The records are read from the store the logger writes
(the same `SEISMO_LOGGER_*` settings, or `--sqlite`), oldest first, and pass the same checks the drift
service applies to request events; the ones it would have refused are counted and skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seismo.protocol.cloudevents import CloudEvent
from seismo.protocol.types import KSERVE_REQUEST
from seismo.store.base import Record, RecordStore, stored_records


@dataclass(frozen=True)
class ReplayedWindow:
    window: int
    size: int
    first_prediction_id: str
    last_prediction_id: str
    result: dict[str, Any]  # the detector's result as the drift service publishes it

    def to_json(self) -> dict[str, Any]:
        return {**self.result, "window": self.window, "size": self.size, "first_prediction_id": self.first_prediction_id,
                "last_prediction_id": self.last_prediction_id}


@dataclass
class ReplaySummary:
    records: int = 0
    instances: int = 0
    skipped: dict[str, int] | None = None
    left_over: int = 0  # instances after the last full window (the live service would still be waiting for more)


def instances_of_record(record: Record, model: str, shape: tuple[int, ...] | None) -> np.ndarray:
    """The record's request instances, through exactly the drift service's checks (Rejection when refused)."""
    from seismo.protocol.instances import instances_of_event

    if record.request is None:
        from seismo.protocol.instances import Rejection

        raise Rejection("no_request", "the record has no request payload", model)
    event = CloudEvent(record.prediction_id, "seismo-replay", KSERVE_REQUEST, record.request, record.request_content_type,
                       extensions={"inferenceservicename": model})
    return instances_of_event(event, model, shape)[1]


def replay(store: RecordStore, detector: Any, model: str, window: int, since: float | None = None, until: float | None = None,
           progress: Callable[[str], None] | None = None) -> tuple[list[ReplayedWindow], ReplaySummary]:
    """Count windows of `window` instances over the stored requests, each tested by `detector`."""
    from seismo.detect.windows import WindowResult
    from seismo.protocol.instances import Rejection

    if window < 2:
        raise ValueError(f"--window must be at least 2, not {window}")
    summary = ReplaySummary(skipped={})
    results: list[ReplayedWindow] = []
    pending: list[np.ndarray] = []
    pending_ids: list[str] = []
    pending_rows = 0
    times: list[float] = []
    for record in stored_records(store, model, since, until):
        summary.records += 1
        try:
            rows = instances_of_record(record, model, detector.instance_shape)
        except Rejection as exc:
            assert summary.skipped is not None
            summary.skipped[exc.reason] = summary.skipped.get(exc.reason, 0) + 1
            continue
        summary.instances += len(rows)
        pending.append(rows)
        pending_ids.extend([record.prediction_id] * len(rows))
        times.extend([record.request_time or record.created_at] * len(rows))
        pending_rows += len(rows)
        while pending_rows >= window:  # one event may fill more than one window, as in the live service
            stacked = np.concatenate(pending)
            chunk, rest = stacked[:window], stacked[window:]
            number = len(results)
            tested = WindowResult(model, number, window, times[0], times[window - 1], detector.kind, detector.predict(chunk),
                                  getattr(detector, "detector_version", None))
            results.append(ReplayedWindow(number, window, pending_ids[0], pending_ids[window - 1], tested.to_json()))
            if progress:
                progress(f"window {number}: drift={tested.result.is_drift} p={tested.result.p_val:.4g}")
            pending, pending_ids, times = ([rest] if len(rest) else []), pending_ids[window:], times[window:]
            pending_rows = len(rest)
    summary.left_over = pending_rows
    return results, summary


def print_table(results: list[ReplayedWindow], summary: ReplaySummary, out=sys.stdout) -> None:
    print(f"{'window':>6}  {'size':>5}  {'drift':>5}  {'p_val':>10}  {'distance':>10}  {'threshold':>10}  first prediction", file=out)
    for r in results:
        j = r.result
        print(f"{r.window:>6}  {r.size:>5}  {'yes' if j['is_drift'] else 'no':>5}  {j['p_val']:>10.4g}  {j['distance']:>10.4g}  "
              f"{j['threshold']:>10.4g}  {r.first_prediction_id}", file=out)
    skipped = ", ".join(f"{k} {v}" for k, v in sorted((summary.skipped or {}).items())) or "none"
    print(f"{summary.records} records, {summary.instances} instances, {len(results)} windows; {summary.left_over} instances after the last "
          f"full window; skipped: {skipped}", file=out)


def run(args: Any) -> int:
    """The command: open the logger's store, load the detector, replay, print and optionally save."""
    import json

    from seismo.cli_errors import env_int
    from seismo.detect.saving import load_detector
    from seismo.store.settings import RecordStoreSettings
    from seismo.times import parse_timestamp

    try:
        since = parse_timestamp(args.since) if args.since else None
        until = parse_timestamp(args.until) if args.until else None
    except ValueError as exc:
        print(f"seismo replay: {exc}", file=sys.stderr)
        return 2
    if args.window is None:
        args.window = env_int("SEISMO_DRIFT_WINDOW_SIZE", 1000, minimum=2)
    if args.window < 2:  # before the store is touched: the arguments first
        print(f"seismo replay: --window must be at least 2, not {args.window}", file=sys.stderr)
        return 2
    sqlite = args.sqlite or (Path(args.data_dir) / "records.db" if args.data_dir else None)
    settings = RecordStoreSettings.named(getattr(args, "store", None), sqlite)
    try:
        detector = load_detector(args.detector)
    except (OSError, ValueError) as exc:
        print(f"seismo replay: cannot load the detector at {args.detector}: {exc}", file=sys.stderr)
        return 2
    if getattr(detector, "kind", None) is None or not hasattr(detector, "instance_shape"):
        print(f"seismo replay: {args.detector} is not a drift detector", file=sys.stderr)
        return 2
    try:
        store = settings.open_existing_store()
    except FileNotFoundError as exc:
        print(f"seismo replay: {exc}", file=sys.stderr)
        return 2
    print(f"replaying {args.model} from {settings.describe_store()} with {args.detector} ({detector.kind}), windows of {args.window}",
          file=sys.stderr)
    try:
        results, summary = replay(store, detector, args.model, args.window, since, until,
                                  progress=lambda line: print("  " + line, file=sys.stderr, flush=True))
    except ValueError as exc:
        print(f"seismo replay: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print_table(results, summary)
    if args.out:
        with open(args.out, "w") as out:
            for r in results:
                out.write(json.dumps({**r.to_json(), "detector_path": str(args.detector)}) + "\n")
        print(f"wrote {len(results)} windows to {args.out}", file=sys.stderr)
    return 0
