"""Who may send which events: each kind only from the identity that produces it.

With auth on, the auth middleware leaves the caller's identity in the request's scope (seismo.services.auth).
A record's request and response come only from the model server, a drift result only from the drift
service, outlier and adversarial verdicts only from the outlier service, data-quality findings only from the metrics server, feedback from feedback senders
and client tokens (the same people `POST /feedback` takes). Other event types (a team's own) need an
identity, any identity.

The local broker stamps the identity it authenticated onto every event it journals (the `seismosender`
extension, replacing whatever the event carried), and a reply with its trigger's `replies` identity; a
subscriber trusts that stamp only on a delivery from the broker's own identity. Knative's broker stamps
nothing: with OIDC its EventPolicies check senders at its ingress (the chart renders them), and a
subscriber takes its deliveries as checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from seismo.protocol.cloudevents import CloudEvent
from seismo.protocol.types import EventKind, kind_of
from seismo.services.auth import CLIENT, SENDER_SCOPE_KEY

SENDER_EXTENSION = "seismosender"
BROKER = "broker"

PRODUCERS: dict[EventKind, frozenset[str]] = {
    EventKind.REQUEST: frozenset({"model"}),
    EventKind.RESPONSE: frozenset({"model"}),
    EventKind.DRIFT: frozenset({"drift"}),
    EventKind.OUTLIER: frozenset({"outlier"}),
    EventKind.ADVERSARIAL: frozenset({"outlier"}),
    EventKind.QUALITY: frozenset({"metrics"}),
    EventKind.FEEDBACK: frozenset({"feedback", CLIENT, "model"}),  # the model server relays Seldon's /api/v1.0/feedback
}


def caller(scope: Mapping[str, Any]) -> str | None:
    """The identity the auth middleware found for this request; None when auth (or event auth) is off."""
    return scope.get(SENDER_SCOPE_KEY)


def origin(identity: str | None, event: CloudEvent) -> str | None:
    """Who sent the event: the caller, or on a delivery from the broker the sender it stamped."""
    if identity == BROKER:
        return event.extensions.get(SENDER_EXTENSION, BROKER)
    return identity


def refusal(identity: str | None, event: CloudEvent) -> str | None:
    """None when `identity` may deliver `event`; else why not (answered 403 and counted as `forbidden_sender`)."""
    if identity is None:
        return None
    if identity == BROKER and SENDER_EXTENSION not in event.extensions:
        return None  # Knative's broker: its EventPolicies checked the sender at its ingress
    sender = origin(identity, event)
    allowed = PRODUCERS.get(kind_of(event.type))  # type: ignore[arg-type]
    if allowed is None or sender in allowed:
        return None
    return f"events of type {event.type!r} are accepted only from {', '.join(sorted(allowed))}; this one came from {sender!r}"


def stamp(event: CloudEvent, identity: str | None) -> CloudEvent:
    """The event marked with the identity the broker authenticated (auth on), or without a claimed one (auth off)."""
    if identity is not None:
        return event.with_extensions(**{SENDER_EXTENSION: identity})
    if SENDER_EXTENSION in event.extensions:
        return replace(event, extensions={k: v for k, v in event.extensions.items() if k != SENDER_EXTENSION})
    return event
