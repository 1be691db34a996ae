"""The ledger's counters: bumps inside a transaction are summed and written at its commit, and undone with it."""

import sqlite3

import pytest
from starlette.requests import Request

from seismo.performance.ledger import Ledger
from seismo.services.common import header_dict


def test_bumps_in_a_transaction_are_summed_and_written_at_the_commit(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db")
    other = sqlite3.connect(str(tmp_path / "ledger.db"))
    with ledger.transaction():
        for _ in range(3):
            ledger.bump("m", "received")
        ledger.bump("m", "joined", 2)
        ledger.bump("n", "received")
        # Nothing is written before the commit: another connection still sees no counts.
        assert other.execute("SELECT COUNT(*) FROM counts").fetchone()[0] == 0
    assert ledger.counts("m") == {"received": 3, "joined": 2, "pending": 0, "orphaned": 0, "late": 0}
    assert ledger.counts("n")["received"] == 1
    ledger.bump("m", "late")  # outside a transaction: written at once
    assert ledger.counts("m")["late"] == 1
    assert other.execute("SELECT value FROM counts WHERE model = 'm' AND name = 'late'").fetchone()[0] == 1


def test_a_failed_transaction_leaves_no_bump_behind(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db")
    with ledger.transaction():
        ledger.bump("m", "received")
    with pytest.raises(RuntimeError), ledger.transaction():
        ledger.bump("m", "received", 5)
        raise RuntimeError("the store failed half-way")
    with ledger.transaction():
        ledger.bump("m", "joined")
    assert ledger.counts("m")["received"] == 1
    assert ledger.counts("m")["joined"] == 1


def test_header_dict_answers_as_starlette_headers_do():
    raw = [(b"content-type", b"application/json"), (b"x-seismo-cohort", b"first"), (b"x-seismo-cohort", b"second"),
           (b"traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"), (b"x-latin", "caf\xe9".encode("latin-1"))]
    request = Request({"type": "http", "method": "POST", "path": "/", "headers": raw, "query_string": b""})
    plain = header_dict(request)
    for name in ("content-type", "x-seismo-cohort", "traceparent", "x-latin", "x-absent"):
        assert plain.get(name) == request.headers.get(name)
    assert plain["x-seismo-cohort"] == "first"
