"""Subscribers with several replicas: each delivery goes to the next replica in turn, as a Kubernetes
Service spreads connections over its pods (`seismo up --replicas` runs each replica as its own process).

The spec names each subscriber's base URL and its other replicas:
`http://drift-a:9000=http://drift-b:9000,http://drift-c:9000;http://metrics-a:9000=...`. A delivery
to a URI under a base goes to the next of [base, *others] with the rest of the URI kept; a replica that
is down fails that attempt, and the retry goes to the next one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator


class ReplicaError(ValueError):
    """The replicas spec is malformed; the message names the part."""


class Replicas:
    def __init__(self, spec: str | None = None):
        self._turns: dict[str, Iterator[str]] = {}
        for part in filter(None, (p.strip() for p in (spec or "").split(";"))):
            base, sep, others = part.partition("=")
            replicas = [base.strip().rstrip("/"), *(o.strip().rstrip("/") for o in others.split(",") if o.strip())]
            if not sep or len(replicas) < 2 or not all(r.startswith(("http://", "https://")) for r in replicas):
                raise ReplicaError(f"replicas {part!r}: write BASE_URL=OTHER_URL[,OTHER_URL...] with http(s):// URLs")
            self._turns[replicas[0]] = itertools.cycle(replicas)

    def __bool__(self) -> bool:
        return bool(self._turns)

    def pick(self, uri: str) -> str:
        """Where this delivery to `uri` goes: the next replica of its subscriber, or `uri` itself."""
        for base, turns in self._turns.items():
            if uri == base or uri.startswith(base + "/"):
                return next(turns) + uri[len(base):]
        return uri
