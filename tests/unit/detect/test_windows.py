import numpy as np

from seismo.detect.windows import WindowStore


def rows(n, value=0.0):
    return np.full((n, 2), value, dtype=np.float32)


def test_count_windows_take_exactly_size_rows_in_order(tmp_path):
    store = WindowStore(tmp_path / "w.db", (2,), size=5)
    assert store.add("m", rows(3, 1)) == []
    windows = store.add("m", np.vstack([rows(2, 2), rows(5, 3), rows(1, 4)]))  # 11 rows: two windows and 1 left
    assert [w.number for w in windows] == [0, 1] and all(len(w.rows) == 5 for w in windows)
    assert windows[0].rows[:, 0].tolist() == [1, 1, 1, 2, 2] and windows[1].rows[:, 0].tolist() == [3] * 5
    assert store.pending("m") == 1 and store.pending("other") == 0
    store.close()
    reopened = WindowStore(tmp_path / "w.db", (2,), size=5)
    assert reopened.pending("m") == 1
    assert [w.number for w in reopened.add("m", rows(4))] == [2]  # numbering survives too


def test_tumbling_and_sliding_time_windows(tmp_path):
    tumbling = WindowStore(tmp_path / "t.db", (2,), size=4, mode="tumbling", seconds=10, min_rows=2)
    tumbling.add("m", rows(3), now=100.0)
    tumbling.add("m", rows(3, 1), now=105.0)  # only the 4 newest rows are kept: a window never exceeds its size
    assert tumbling.due(now=109.0) == []
    (window,) = tumbling.due(now=111.0)
    assert len(window.rows) == 4 and (window.start, window.end) == (100.0, 110.0)
    assert tumbling.pending("m") == 0 and tumbling.due(now=125.0) == []
    sliding = WindowStore(tmp_path / "s.db", (2,), size=100, mode="sliding", seconds=10, slide_seconds=5, min_rows=2)
    sliding.add("m", rows(3), now=100.0)
    sliding.add("m", rows(3, 1), now=108.0)
    (first,) = sliding.due(now=109.0)
    assert len(first.rows) == 6
    assert sliding.due(now=112.0) == []  # slide not elapsed
    (second,) = sliding.due(now=115.0)  # rows older than 105 left the window
    assert len(second.rows) == 3 and second.number == 1


def test_a_batch_commits_once_and_a_failing_event_undoes_only_itself(tmp_path):
    """Group commit: adds inside `batch()` share one transaction; an add that fails half-way (here after
    its event id was written) rolls back to its savepoint, so the others stay and it can come again."""
    import pytest

    store = WindowStore(tmp_path / "w.db", (2,), size=5)
    with store.batch():
        assert store.add("m", rows(3, 1), event_id="a") == []
        with pytest.raises(TypeError):
            store.add("m", [object()], event_id="bad")  # fails after the dedup row, before its rows
        (window,) = store.add("m", rows(2, 2), event_id="b")
        reader = WindowStore(tmp_path / "w.db", (2,), size=5)  # a second connection sees nothing before the commit
        assert reader.unfinished() == []
    assert [w.number for w, _ in reader.unfinished()] == [0] and window.rows[:, 0].tolist() == [1, 1, 1, 2, 2]
    assert store.add("m", rows(1), event_id="a") is None  # committed: a redelivery adds nothing
    assert store.add("m", rows(1), event_id="bad") == []  # rolled back: the event may come again
    assert reader.pending("m") == 1
