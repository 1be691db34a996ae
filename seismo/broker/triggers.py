"""Triggers: which events go to which subscriber, and how hard to try. Shaped like Knative's.

The trigger file is the one source for the local broker and (later) the Knative `Trigger` objects:

    triggers:
      - name: logger-request
        filter: {attributes: {type: org.kubeflow.serving.inference.request}}
        subscriber: {uri: "http://127.0.0.1:8091/"}
        delivery: {retry: 5, backoffPolicy: exponential, backoffDelay: PT0.2S, timeout: PT10S,
                   deadLetterSink: {uri: "http://..."}}
        batch: 64          # Seismo's extension: up to 64 events per request in batched mode


An entry may also be a whole Knative Trigger object (`metadata.name` plus `spec`). `${VAR:-default}`
in the file is replaced from the environment, so ports can move without editing it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from seismo import times
from seismo.config_files import one_of, validation_message
from seismo.topology import expand_env

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


IDENTITY = re.compile(r"[a-z][a-z0-9-]{0,62}")  # as seismo.services.auth.IDENTITY


class TriggerConfigError(ValueError):
    pass


def parse_duration(text: str, where: str) -> float:
    """ISO-8601 duration (`PT0.2S`, `PT1M30S`, `P1D`) in seconds: what Knative's delivery spec takes."""
    try:
        return times.parse_duration(text, iso_only=True)
    except ValueError:
        raise TriggerConfigError(f"{where}: {text!r} is not an ISO-8601 duration such as PT0.5S or PT1M") from None


@dataclass(frozen=True)
class Delivery:
    retry: int = 3
    backoff_policy: str = "exponential"
    backoff_delay: float = 0.2
    timeout: float = 10.0
    dead_letter_uri: str | None = None

    def backoff(self, attempt: int, cap: float) -> float:
        """Wait before retry number `attempt` (1-based), as Knative computes it, capped."""
        if self.backoff_policy == "linear":
            delay = self.backoff_delay * attempt
        else:
            delay = self.backoff_delay * 2 ** (attempt - 1)
        return min(delay, cap)


@dataclass(frozen=True)
class Trigger:
    name: str
    subscriber_uri: str
    filter_attributes: Mapping[str, str] = field(default_factory=dict)
    delivery: Delivery = field(default_factory=Delivery)
    batch: int = 1
    """Seismo's extension, not Knative's: the subscriber takes up to this many events per request in
    CloudEvents' batched mode (the logger, outlier and drift services do). Not rendered into Knative Triggers."""
    replies: str | None = None
    """Seismo's extension: the sender identity of the subscriber's reply events (seismo.services.senders),
    e.g. `drift` for the drift service's results. None: `trigger:<name>`, which produces no known kind."""

    def matches(self, attributes: Mapping[str, str]) -> bool:
        """Knative's exact-match filter: every filter attribute equal; an empty filter takes all."""
        return all(attributes.get(k) == v for k, v in self.filter_attributes.items())


class TriggerIndex:
    """Which triggers an event matches, in the triggers' order, without asking every trigger: nearly
    every filter names a `type`, so an event is checked only against the triggers for its type and
    those whose filter names none (with 21 default triggers, asking each one was about 9 % of the
    broker's busy time under load)."""

    def __init__(self, triggers: list[Trigger]):
        self._by_type: dict[str, list[tuple[int, Trigger]]] = {}
        self._any_type: list[tuple[int, Trigger]] = []
        for position, trigger in enumerate(triggers):
            wanted = trigger.filter_attributes.get("type")
            (self._any_type if wanted is None else self._by_type.setdefault(wanted, [])).append((position, trigger))

    def matching(self, attributes: Mapping[str, str]) -> tuple[str, ...]:
        candidates = self._by_type.get(attributes.get("type", ""), [])
        if self._any_type:
            candidates = sorted([*candidates, *self._any_type], key=lambda pair: pair[0])
        return tuple(trigger.name for _, trigger in candidates if trigger.matches(attributes))




BackoffPolicy = Literal["linear", "exponential"]


def _iso_duration(value: Any) -> Any:
    if value is not None:
        try:
            times.parse_duration(value, iso_only=True)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO-8601 duration such as PT0.5S or PT1M") from None
    return value


class DeadLetterSpec(BaseModel):
    model_config = ConfigDict(extra="allow")  # a Knative `ref` may sit beside the uri; only the uri is used here

    uri: StrictStr


class DeliverySpec(BaseModel):
    """A Trigger's `delivery`, with Knative's field names; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    retry: StrictInt = Field(3, ge=0)
    backoffPolicy: Annotated[BackoffPolicy, one_of("backoffPolicy", BackoffPolicy)] = "exponential"
    backoffDelay: Annotated[str | None, BeforeValidator(_iso_duration)] = None
    timeout: Annotated[str | None, BeforeValidator(_iso_duration)] = None
    deadLetterSink: DeadLetterSpec | None = None

    def to_delivery(self) -> Delivery:
        return Delivery(
            retry=self.retry,
            backoff_policy=self.backoffPolicy,
            backoff_delay=times.parse_duration(self.backoffDelay, iso_only=True) if self.backoffDelay else Delivery.backoff_delay,
            timeout=times.parse_duration(self.timeout, iso_only=True) if self.timeout else Delivery.timeout,
            dead_letter_uri=self.deadLetterSink.uri if self.deadLetterSink else None,
        )


def _parse_delivery(doc: Any, where: str) -> Delivery:
    if doc is None:
        return Delivery()
    if not isinstance(doc, dict):
        raise TriggerConfigError(f"{where}.delivery must be a mapping")
    try:
        return DeliverySpec.model_validate(doc).to_delivery()
    except ValidationError as exc:
        message = validation_message(exc, DeliverySpec, keys="fields").replace("'deadLetterSink.uri' is required", "deadLetterSink needs a 'uri'")
        raise TriggerConfigError(f"{where}.delivery: {message}") from None


def parse_trigger(doc: Any, index: int) -> Trigger:
    where = f"triggers[{index}]"
    if not isinstance(doc, dict):
        raise TriggerConfigError(f"{where} must be a mapping")
    if "spec" in doc:  # a whole Knative Trigger object
        name = (doc.get("metadata") or {}).get("name")
        spec = doc["spec"]
    else:
        name, spec = doc.get("name"), doc
    if not isinstance(name, str) or not _NAME.match(name):
        raise TriggerConfigError(f"{where}: name {name!r} must be a DNS-1123 label (lower case, digits, '-')")
    where = f"trigger {name!r}"
    subscriber = spec.get("subscriber")
    if not isinstance(subscriber, dict) or not isinstance(subscriber.get("uri"), str):
        raise TriggerConfigError(f"{where}: subscriber.uri is required (a 'ref' cannot be resolved outside Kubernetes)")
    filt = spec.get("filter") or {}
    attributes = filt.get("attributes") or {} if isinstance(filt, dict) else None
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise TriggerConfigError(f"{where}: filter.attributes must map attribute names to strings")
    batch = doc.get("batch", 1)
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 1000:
        raise TriggerConfigError(f"{where}: batch must be an integer from 1 to 1000 (events per request), got {batch!r}")
    replies = doc.get("replies")
    if replies is not None and (not isinstance(replies, str) or not IDENTITY.fullmatch(replies)):
        raise TriggerConfigError(f"{where}: replies must be a sender identity such as drift or outlier, got {replies!r}")
    return Trigger(
        name=name,
        replies=replies,
        subscriber_uri=subscriber["uri"],
        filter_attributes=dict(attributes),
        delivery=_parse_delivery(spec.get("delivery"), where),
        batch=batch,
    )


def load_triggers(path: str | Path, env: Mapping[str, str] | None = None) -> list[Trigger]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TriggerConfigError(f"cannot read trigger file {path}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(expand_env(text, env))
    except yaml.YAMLError as exc:
        raise TriggerConfigError(f"trigger file {path} is not valid YAML: {exc}") from None
    entries = doc.get("triggers") if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        raise TriggerConfigError(f"trigger file {path} needs a 'triggers' list")
    triggers = [parse_trigger(entry, i) for i, entry in enumerate(entries)]
    names = [t.name for t in triggers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TriggerConfigError(f"trigger file {path}: duplicate trigger names {duplicates}")
    return triggers
