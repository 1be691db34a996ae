"""`seismo embeddings check|versions`: the command-line side of embedding versioning."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

import numpy as np


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _check(args)
    return _versions(args)


def _check(args: argparse.Namespace) -> int:
    from seismo.embeddings.check import check_models

    print(f"embedding a probe set with {args.old} and {args.new} ...", file=sys.stderr, flush=True)
    try:
        probe = np.load(args.probe, allow_pickle=False) if args.probe else None
        result = check_models(args.old, args.new, probe)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"seismo embeddings check: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"{result.old_version} -> {result.new_version} (claimed: {result.claimed})")
        print(("OK: " if result.honest else "NOT HONEST: ") + result.message)
    return 0 if result.honest else 1


def _versions(args: argparse.Namespace) -> int:
    query = f"?{urllib.parse.urlencode({'model': args.model})}" if args.model else ""
    url = f"{args.logger_url.rstrip('/')}/v1/embeddings/versions{query}"
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - an operator-given URL
            versions = json.loads(answer.read())["versions"]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        print(f"seismo embeddings versions: cannot read {url}: {exc}", file=sys.stderr)
        return 2
    if not versions:
        print("no embeddings stored" + (f" for {args.model}" if args.model else ""))
        return 0
    width = max(len(v["version"]) for v in versions)
    print(f"{'version':<{width}}  {'records':>9}  first                            last")
    for v in versions:
        print(f"{v['version']:<{width}}  {v['count']:>9}  {v['first']:<31}  {v['last']}")
    return 0
