"""`seismo dead-letters list|replay`: the events no subscriber took, sent again once the cause is fixed.

The logger is every Trigger's dead-letter sink: it keeps each dead letter whole in the record store
(SQLite, PostgreSQL or Elasticsearch), so every replica lists the same letters and a restart loses
none. `replay` posts each event, as it first arrived (the sink's `knativeerror*` extensions taken
off), to the subscriber that refused it (`knativeerrordest`) or to `--to`, and forgets the letters
the subscriber took (2xx). Subscribers deduplicate by prediction id, so a letter replayed twice
changes nothing the second time.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from seismo.protocol.cloudevents import CloudEventError, from_http, to_binary
from seismo.store.base import DeadLetter, RecordStore

SINK_EXTENSIONS = ("knativeerrordest", "knativeerrorcode", "knativeerrordata")
"""What the broker adds when it dead-letters an event: not part of the event the subscriber refused."""
PAGE = 200


def all_dead_letters(store: RecordStore, model: str | None = None) -> Iterator[DeadLetter]:
    """Every kept dead letter oldest first, page by page (letters removed meanwhile are not skipped over)."""
    after: tuple[float, str] | None = None
    while page := store.dead_letters(model, PAGE, after):
        yield from page
        after = (page[-1].received_at, page[-1].key)


def original_event(letter: DeadLetter) -> tuple[dict[str, str], bytes]:
    """Headers and body of the event as its subscriber first got it (binary content mode)."""
    event = from_http({"content-type": "application/cloudevents+json"}, letter.event)
    event = replace(event, extensions={k: v for k, v in event.extensions.items() if k not in SINK_EXTENSIONS})
    return to_binary(event)


def replay(store: RecordStore, post: Callable[[str, dict[str, str], bytes], int], letters: Iterable[DeadLetter], to: str | None = None,
           keep: bool = False, progress: Callable[[str], None] = lambda line: None) -> Counter[str]:
    """Send each letter to `to` or its destination; forget those taken (unless `keep`). Outcomes counted:
    `replayed`, `refused <status>`, `unreachable`, `no destination`, `bad destination` (not an http(s) URL:
    the destination is the event's `knativeerrordest`, which a sender could have forged), `unreadable` (a
    stored event that no longer parses: kept, never sent). `letters` may be a stream (a page at a time from
    the store): a large backlog is never held in memory."""
    outcomes: Counter[str] = Counter()
    for n, letter in enumerate(letters, 1):
        url = to or letter.destination
        if not url:
            outcomes["no destination"] += 1
            continue
        if not url.startswith(("http://", "https://")):
            outcomes["bad destination"] += 1
            progress(f"{letter.key}: not sent to {url[:80]!r}: not an http(s) URL (give --to)")
            continue
        try:
            headers, body = original_event(letter)
        except CloudEventError as exc:
            outcomes["unreadable"] += 1
            progress(f"{letter.key}: the stored event does not parse ({str(exc)[:80]}); kept")
            continue
        try:
            status = post(url, headers, body)
        except OSError as exc:
            outcomes["unreachable"] += 1
            progress(f"{letter.key}: {url} unreachable ({type(exc).__name__})")
            continue
        if 200 <= status < 300:
            outcomes["replayed"] += 1
            if not keep:
                store.remove_dead_letter(letter.key)
        else:
            outcomes[f"refused {status}"] += 1
        if n % 100 == 0:
            progress(f"{n} sent: {dict(outcomes)}")
    return outcomes


def _http_post(token: str | None) -> tuple[Callable[[str, dict[str, str], bytes], int], Callable[[], None]]:
    import httpx

    client = httpx.Client(timeout=10.0)
    auth = {"authorization": f"Bearer {token}"} if token else {}

    def post(url: str, headers: dict[str, str], body: bytes) -> int:
        try:
            return client.post(url, headers={**headers, **auth}, content=body).status_code
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise OSError(str(exc)) from exc

    return post, client.close


def run(args: Any) -> int:
    from seismo.store.settings import RecordStoreSettings

    sqlite = args.sqlite or (Path(args.data_dir) / "records.db" if args.data_dir else None)
    settings = RecordStoreSettings.named(args.store, sqlite)
    try:
        store = settings.open_existing_store()
    except FileNotFoundError as exc:
        print(f"seismo dead-letters: {exc}", file=sys.stderr)
        return 2
    try:
        chosen = (d for d in all_dead_letters(store, args.model) if not args.key or d.key in args.key)
        letters = itertools.islice(chosen, args.limit) if args.limit is not None else chosen
        if args.action == "list" or args.dry_run:
            listed = 0
            for d in letters:
                listed += 1
                print(f"{d.key}  {d.to_json()['time']}  {d.model or '-'}  {d.type}  id={d.event_id}  code={d.code}  "
                      f"to={args.to if args.action == 'replay' and args.to else d.destination}  {len(d.event)} B", flush=True)
            print(f"{listed} dead letter(s) in {settings.describe_store()}", file=sys.stderr)
            return 0
        print(f"replaying dead letters from {settings.describe_store()}"
              f"{' to ' + args.to if args.to else ' to their subscribers'}", file=sys.stderr)
        post, close = _http_post(os.environ.get("SEISMO_TOKEN") or None)
        try:
            outcomes = replay(store, post, letters, args.to, args.keep, lambda line: print("  " + line, file=sys.stderr, flush=True))
        finally:
            close()
    finally:
        store.close()
    print(", ".join(f"{n} {what}" for what, n in sorted(outcomes.items())) or "nothing to replay")
    return 0 if outcomes["replayed"] == sum(outcomes.values()) else 1


def add_parser(command: Callable[..., Any]) -> None:
    """`seismo dead-letters` and its two actions (called by seismo.cli.build_parser)."""
    dead = command("dead-letters", help="list the events no subscriber took (kept by the logger), or send them again")
    dsub = dead.add_subparsers(dest="action", required=True)
    for name, text in (("list", "kept dead letters, oldest first"),
                       ("replay", "post each event again to the subscriber that refused it (or --to); forget those it takes")):
        action = dsub.add_parser(name, help=text)
        action.add_argument("--model", help="only this model's")
        action.add_argument("--key", action="append", help="only this dead letter (its key from `list`); repeatable")
        action.add_argument("--limit", type=int, help="at most this many, oldest first")
        action.add_argument("--data-dir", help="the data directory `seismo up` used (default $SEISMO_DATA_DIR or .seismo/): its records.db")
        action.add_argument("--sqlite", type=Path, help="the SQLite store (default: the logger's, from SEISMO_LOGGER_* settings)")
        action.add_argument("--store", help="the record store, a SQLite file, a PostgreSQL URL (postgresql://...) or an Elasticsearch "
                                            "URL (http(s)://...); over --sqlite and --data-dir")
        if name == "replay":
            action.add_argument("--to", help="post every event here instead of its recorded subscriber (a port-forward, another service)")
            action.add_argument("--keep", action="store_true", help="keep the letters the subscriber took (default: forget them)")
            action.add_argument("--dry-run", action="store_true", help="list what would be sent, send nothing")
    dead.set_defaults(func=run)
