"""The hostile suite runs against the session's shared stack (tests/shared_stack.py), and every case
ends with the same check: the stack is still ready, and normal traffic sent afterwards is stored completely."""

from __future__ import annotations

import pytest
from shared_stack import MODEL, SERVICES, Stack

__all__ = ["MODEL", "SERVICES"]


@pytest.fixture
def s(shared_stack: Stack):
    """The shared stack; after the case, it must still serve and store normal traffic completely."""
    yield shared_stack
    shared_stack.assert_still_serving()
