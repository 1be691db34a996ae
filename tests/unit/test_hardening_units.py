"""Unit checks of the hardening mechanisms: attribute rules, bounded labels, item-by-item batches,
durable drift windows, pending feedback backoff, prediction ids."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from seismo.batching import ThreadBatcher
from seismo.detect.windows import WindowStore
from seismo.labels import OTHER, LabelValues, event_type_label
from seismo.performance.ledger import Ledger
from seismo.protocol.cloudevents import CloudEvent, CloudEventError, from_http, to_binary
from seismo.protocol.limits import check_depth, check_prediction_id
from seismo.protocol.payloads import PayloadError


def test_every_attribute_is_percent_encoded_and_decodes_back():
    event = CloudEvent("a%0Ab \"q\" é\u2603", "http://s/ x", "t", b"{}", extensions={"cohort": "ü%", "requestid": "x y"})
    headers, body = to_binary(event)
    assert all(v.isascii() and v.isprintable() and " " not in v for v in headers.values())
    assert from_http(headers, body) == event


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "\x00", "x\x7f", "\x85"])
def test_control_characters_are_refused_in_every_attribute(value):
    with pytest.raises(CloudEventError, match="control character"):
        from_http({"ce-specversion": "1.0", "ce-id": "ok", "ce-source": "s", "ce-type": "t", "ce-cohort": value.encode("latin-1").decode("latin-1")
                   if value != "\x85" else "%C2%85"}, b"")


def test_prediction_ids_must_be_visible_ascii():
    assert check_prediction_id("a%0Ab", "id") == "a%0Ab"
    for bad in ("a\nb", "with space", "é", "x" * 257, ""):
        with pytest.raises(PayloadError):
            check_prediction_id(bad, "id")


def test_depth_check_counts_lists_and_objects():
    check_depth({"a": [[1, 2], [3]]}, 3)
    with pytest.raises(PayloadError, match="deeper than 3"):
        check_depth({"a": [[[1]]]}, 3)


def test_labels_admit_repeated_values_and_not_a_flood():
    labels = LabelValues(known={"configured"}, max_extra=2, admit_after=3, max_tracked=100)
    assert labels("configured") == "configured"
    assert [labels(f"junk-{i}") for i in range(1000)] == [OTHER] * 1000
    assert [labels("real") for _ in range(3)] == [OTHER, OTHER, "real"]
    assert labels("real") == "real"
    assert event_type_label("org.kubeflow.serving.inference.request") != OTHER and event_type_label("x.y") == OTHER


def test_a_failing_batch_fails_only_its_bad_items():
    def run(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky")
        return [i * 2 for i in items]

    async def main():
        batcher = ThreadBatcher(run, max_batch=64)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(20)), return_exceptions=True)
        await batcher.close()
        return results

    results = asyncio.run(main())
    assert isinstance(results[13], ValueError)
    assert [r for i, r in enumerate(results) if i != 13] == [i * 2 for i in range(20) if i != 13]


def test_a_lone_item_runs_at_once_and_waiting_for_company_starts_only_under_load():
    """Adaptive batching must not charge an unloaded request the wait for company (issue 12: single-image
    latency); under load the first item of a batch still waits for the others."""
    import time

    sizes: list[int] = []

    def run(items):
        sizes.append(len(items))
        time.sleep(0.02)  # a forward pass: requests arriving meanwhile queue behind it
        return items

    async def main():
        batcher = ThreadBatcher(run, max_batch=64, max_wait=1.0)
        batcher.start()
        started = time.perf_counter()
        await batcher.submit(0)
        lone = time.perf_counter() - started
        await asyncio.gather(*(batcher.submit(i) for i in range(10)))  # a burst: under load from here on

        async def later(item, delay):
            await asyncio.sleep(delay)
            return await batcher.submit(item)

        paired = await asyncio.gather(later("a", 0.0), later("b", 0.2))
        await batcher.close()
        return lone, paired

    lone, paired = asyncio.run(main())
    assert lone < 0.5  # it did not wait out max_wait (1 s) for company that was not coming
    assert sizes[0] == 1 and sum(sizes[1:-1]) == 10 and len(sizes) - 2 < 10  # the burst was batched
    assert paired == ["a", "b"] and sizes[-1] == 2  # under load "a" waited for "b", 0.2 s later


def test_drift_windows_dedup_and_survive_a_crash_before_the_result(tmp_path):
    rows = np.arange(10, dtype=np.float32).reshape(5, 2)
    store = WindowStore(tmp_path / "w.db", (2,), size=5)
    (window,) = store.add("m", rows, event_id="e1")
    assert store.add("m", rows, event_id="e1") is None  # a redelivery adds nothing
    store.close()  # "crash": the result was never recorded
    reopened = WindowStore(tmp_path / "w.db", (2,), size=5)
    ((again, event_id),) = reopened.unfinished()
    assert event_id == "e1" and again.number == window.number and np.array_equal(again.rows, rows)
    reopened.finish(again, b'{"window": 0}', event_id)
    assert reopened.unfinished() == [] and reopened.results_for("m", "e1") == [b'{"window": 0}']
    assert reopened.pending("m") == 0


def test_unjoinable_pending_feedback_backs_off(tmp_path):
    ledger = Ledger(tmp_path / "m.db")
    with ledger.transaction() as tx:
        for i in range(100):
            tx.add_pending(f"junk-{i}", "m", 100.0, b"{}")
    first = ledger.pending_batch(now=101.0, limit=1000)
    with ledger.transaction() as tx:
        tx.postpone_pending([row[0] for row in first], 101.0)
        tx.add_pending("real", "m", 101.5, b"{}")
    assert [row[0] for row in ledger.pending_batch(now=101.5, limit=10)] == ["real"]  # the junk waits its backoff


def test_a_bad_parameter_is_echoed_bounded():
    """An explain parameter of a million elements was echoed whole in the 400 (3 MB)."""
    from seismo.services.api import parse_query
    from seismo.services.api.explainer import ExplainParameters
    from seismo.services.api.logger import RecordsQuery

    for model, params in ((ExplainParameters, {"threshold": [1] * 1_000_000}), (ExplainParameters, {"method": "x\n" * 100_000}),
                          (RecordsQuery, {"limit": "9" * 100_000})):
        with pytest.raises(ValueError) as caught:
            parse_query(model, params)
        assert len(str(caught.value)) < 200, str(caught.value)[:300]
