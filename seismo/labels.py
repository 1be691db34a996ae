"""Bounded Prometheus label values for what clients control (model names, event types, cohorts).

Every distinct label value is a new time series held in memory by the service and by Prometheus, so a
client sending 10,000 model names must not create 10,000 series. Known values (configured models,
the contract's event types, configured cohorts) always keep their name. Any other value keeps its
name only once it has been seen `admit_after` times, and only while fewer than `max_extra` such values
were admitted; everything else is counted under `other`.

Admission by repetition, not first come first served: a flood of junk values, each seen once or a few
times, never qualifies, so it cannot use up the places a real value that keeps coming will need.
"""

from __future__ import annotations

from collections.abc import Iterable

OTHER = "other"
MAX_LABEL_CHARS = 128


class LabelValues:
    def __init__(self, known: Iterable[str] = (), max_extra: int = 20, admit_after: int = 10, max_tracked: int = 10_000):
        self.known = set(known)
        self.max_extra, self.admit_after, self.max_tracked = max_extra, admit_after, max_tracked
        self.admitted: set[str] = set()
        self._sightings: dict[str, int] = {}

    def __call__(self, value: str | None) -> str:
        if value is None:
            return OTHER
        if value in self.known or value in self.admitted:
            return value
        if len(self.admitted) >= self.max_extra or len(value) > MAX_LABEL_CHARS or not value.isprintable():
            return OTHER
        seen = self._sightings.get(value, 0) + 1
        if seen >= self.admit_after:
            self.admitted.add(value)
            self._sightings.pop(value, None)
            return value
        if len(self._sightings) >= self.max_tracked:
            self._sightings.clear()  # a flood of distinct values: start counting afresh, memory stays bounded
        self._sightings[value] = seen
        return OTHER

    def peek(self, value: str | None) -> str:
        """The label `value` has now, without counting a sighting (readers that must not admit values)."""
        return value if value is not None and (value in self.known or value in self.admitted) else OTHER

    def add_known(self, values: Iterable[str]) -> None:
        self.known.update(values)


def event_type_label(event_type: str) -> str:
    """The contract's event types by name; any other type a client sends is `other`."""
    from seismo.protocol.types import EVENT_KINDS

    return event_type if event_type in EVENT_KINDS else OTHER


HTTP_CODES = frozenset({"400", "401", "403", "404", "408", "409", "410", "413", "415", "422", "429",
                        "500", "501", "502", "503", "504"})
"""The statuses a subscriber plausibly refuses an event with, kept by name in labels."""


def http_code_label(code: str) -> str:
    """A status a client reported, as a label of bounded cardinality: the common refusals by name, any
    other 4xx or 5xx by class, `none` when absent, anything else `other`."""
    if code in HTTP_CODES or code == "none":
        return code
    if len(code) == 3 and code.isdigit() and code[0] in "45":
        return f"{code[0]}xx"
    return OTHER
