"""Drift windows on SQLite (one process) and on a real PostgreSQL server (every replica shares them)."""

import threading

import numpy as np
import pytest

from seismo.detect.windows import WindowStore


def rows(n, value=0.0):
    return np.full((n, 2), value, dtype=np.float32)


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request, tmp_path):
    """`open_store(name, **options)`: a window store; the same name again is another connection to the same
    windows (on PostgreSQL: another replica's)."""
    opened = []
    database = request.getfixturevalue("postgres_url") if request.param == "postgres" else None

    def open_(name: str, *args, **options) -> WindowStore:
        target = database or tmp_path / f"{name}.db"
        opened.append(WindowStore(target, (2,), *args, namespace=f"windows_{name}", **options))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


def test_count_windows_take_exactly_size_rows_in_order(open_store):
    store = open_store("w", size=5)
    assert store.add("m", rows(3, 1)) == []
    windows = store.add("m", np.vstack([rows(2, 2), rows(5, 3), rows(1, 4)]))  # 11 rows: two windows and 1 left
    assert [w.number for w in windows] == [0, 1] and all(len(w.rows) == 5 for w in windows)
    assert windows[0].rows[:, 0].tolist() == [1, 1, 1, 2, 2] and windows[1].rows[:, 0].tolist() == [3] * 5
    assert store.pending("m") == 1 and store.pending("other") == 0
    store.close()
    reopened = open_store("w", size=5)
    assert reopened.pending("m") == 1
    assert [w.number for w in reopened.add("m", rows(4))] == [2]  # numbering survives too


def test_tumbling_and_sliding_time_windows(open_store):
    tumbling = open_store("t", size=4, mode="tumbling", seconds=10, min_rows=2)
    tumbling.add("m", rows(3), now=100.0)
    tumbling.add("m", rows(3, 1), now=105.0)  # only the 4 newest rows are kept: a window never exceeds its size
    assert tumbling.due(now=109.0) == []
    (window,) = tumbling.due(now=111.0)
    assert len(window.rows) == 4 and (window.start, window.end) == (100.0, 110.0)
    assert tumbling.pending("m") == 0 and tumbling.due(now=125.0) == []
    sliding = open_store("s", size=100, mode="sliding", seconds=10, slide_seconds=5, min_rows=2)
    sliding.add("m", rows(3), now=100.0)
    sliding.add("m", rows(3, 1), now=108.0)
    (first,) = sliding.due(now=109.0)
    assert len(first.rows) == 6
    assert sliding.due(now=112.0) == []  # slide not elapsed
    (second,) = sliding.due(now=115.0)  # rows older than 105 left the window
    assert len(second.rows) == 3 and second.number == 1


def test_a_batch_commits_once_and_a_failing_event_undoes_only_itself(open_store):
    """Group commit: adds inside `batch()` share one transaction; an add that fails half-way (here after
    its event id was written) rolls back to its savepoint, so the others stay and it can come again."""
    store = open_store("w", size=5)
    with store.batch():
        assert store.add("m", rows(3, 1), event_id="a") == []
        with pytest.raises(TypeError):
            store.add("m", [object()], event_id="bad")  # fails after the dedup row, before its rows
        (window,) = store.add("m", rows(2, 2), event_id="b")
        reader = open_store("w", size=5)  # a second connection sees nothing before the commit
        assert reader.unfinished() == []
    assert [w.number for w, _ in reader.unfinished()] == [0] and window.rows[:, 0].tolist() == [1, 1, 1, 2, 2]
    assert store.add("m", rows(1), event_id="a") is None  # committed: a redelivery adds nothing
    assert store.add("m", rows(1), event_id="bad") == []  # rolled back: the event may come again
    assert reader.pending("m") == 1


def test_replicas_fill_one_sequence_of_windows_and_recover_what_a_dead_one_took(open_store):
    """Two drift replicas on one store: their events fill one sequence of windows, numbered once, each row in
    exactly one window; an event either replica saw is a redelivery for both; a window a replica took and
    never recorded (it died) is recovered by the other once the lease has passed, and only by one."""
    first, second = open_store("shared", size=10), open_store("shared", size=10)
    windows: list = []
    errors: list = []

    def send(store, offset: int) -> None:
        try:
            for i in range(offset, 200, 2):  # 100 events of 3 rows each, the row values naming the event
                complete = store.add("m", rows(3, i), event_id=f"e{i}")
                windows.extend(complete)
                for window in complete:
                    store.finish(window, b"{}", f"e{i}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(store, offset)) for offset, store in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert sorted(w.number for w in windows) == list(range(60))  # 600 rows: 60 windows, each number once
    values = np.concatenate([w.rows[:, 0] for w in windows])
    assert sorted(np.unique(values, return_counts=True)[1].tolist()) == [3] * 200  # every row in exactly one window
    assert second.add("m", rows(3, 0), event_id="e0") is None  # first's event: a redelivery at second too
    # A replica takes a window and dies before recording it.
    (taken,) = first.add("m", rows(10, 7), event_id="last")
    assert second.unfinished(lease=3600) == []  # still within its lease: the taker may be testing it
    ((recovered, event_id),) = second.unfinished(lease=0)
    assert (recovered.number, event_id) == (taken.number, "last") and np.array_equal(recovered.rows, taken.rows)
    assert first.unfinished(lease=60) == []  # taken again by second: nobody else recovers it within the lease


def test_tumbling_windows_take_rows_by_event_time_and_wait_a_grace_for_late_ones(open_store):
    """Before, a row belonged to the window open when it arrived: an event of 109.5 retried at 110.5 (or
    delivered to a slower replica) was counted in the next window. Now rows carry their event time, and a
    window closes `grace` after its end."""
    store = open_store("event_time", size=100, mode="tumbling", seconds=10, min_rows=1, grace=2)
    store.add("m", rows(2, 1), now=100.0)
    store.add("m", rows(1, 2), now=110.5, at=109.5)  # late: arrived after the window's end, within the grace
    store.add("m", rows(1, 3), now=110.8)  # on time for the next window
    assert store.due(now=111.0) == []  # the grace has not passed
    (first,) = store.due(now=112.1)
    assert (first.start, first.end) == (100.0, 110.0) and sorted(first.rows[:, 0].tolist()) == [1, 1, 2]
    store.add("m", rows(1, 4), now=113.0, at=999.0)  # a clock ahead of ours: taken as arriving now
    (second,) = store.due(now=122.5)
    assert (second.start, second.end) == (110.0, 120.0) and sorted(second.rows[:, 0].tolist()) == [3, 4]


def test_rows_with_an_event_time_far_in_the_past_are_kept_not_dropped_unseen(open_store):
    sliding = open_store("old_events", size=100, mode="sliding", seconds=10, slide_seconds=5, min_rows=1)
    sliding.add("m", rows(3, 1), now=100.0, at=5.0)  # a replayed event, or a clock far behind
    (window,) = sliding.due(now=104.0)  # the next test, within a slide
    assert len(window.rows) == 3
