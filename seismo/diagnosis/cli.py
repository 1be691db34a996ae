"""`seismo diagnose --model M`: ask the metrics server which failure mode the model suffers, print it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


def fetch(metrics_url: str, model: str, since: str | None, cohort: str | None, token: str | None) -> dict[str, Any]:
    query = {k: v for k, v in {"model": model, "since": since, "cohort": cohort}.items() if v}
    url = f"{metrics_url.rstrip('/')}/v1/diagnosis?{urllib.parse.urlencode(query)}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310 - an operator-given URL
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:  # the server's own message names the problem
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise RuntimeError(f"{url}: {exc.code} {message}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read {url}: {exc}") from None


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.1f} %"


def render(doc: dict[str, Any]) -> str:
    lines = [f"Diagnosis of {doc['model']} (since {doc.get('since') or 'the start'}, at {doc['at']})"]
    for cohort, result in doc["cohorts"].items():
        evidence = result["evidence"]
        lines.append(f"\n  cohort {cohort}: {result['verdict']}  (confidence {result['confidence']:.2f})")
        for reason in result["reasons"]:
            lines.append(f"    - {reason}")
        if result.get("culprit"):
            c = result["culprit"]
            lines.append(f"    culprit: {c['model']} version {c.get('version')} (was {c.get('previous_version')}) at {c.get('at')}")
        first, latest = evidence.get("first"), evidence.get("latest")
        if first and latest:
            lines.append(f"    error: validation {_percent(evidence.get('validation_error'))}, first window {_percent(first['error'])},"
                         f" latest {_percent(latest['error'])} (estimated {_percent(latest.get('estimated_error'))})")
        for name in ("input_vs_reference", "input_vs_first", "prediction_drift"):
            test = evidence.get(name)
            if test:
                moved = f", moved: {', '.join(test['top_features'])}" if test.get("top_features") else ""
                lines.append(f"    {name.replace('_', ' ')}: p = {test['p_value']:.3g}{moved}")
        conc = evidence.get("concentration")
        if conc and conc.get("ratio") is not None:
            lines.append(f"    errors on novel inputs {_percent(conc['novel_error'])} vs familiar {_percent(conc['familiar_error'])}")
        for note in evidence.get("notes", []):
            lines.append(f"    note: {note}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    token = os.environ.get("SEISMO_TOKEN") or None
    try:
        doc = fetch(args.metrics_url, args.model, args.since, args.cohort, token)
    except RuntimeError as exc:
        print(f"seismo diagnose: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(doc, indent=2) if args.json else render(doc))
    return 0
