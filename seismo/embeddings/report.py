"""`seismo report embeddings`: one self-contained HTML file to look at a model's embeddings.

A sample of reference and production embeddings projected to 2-D with UMAP (umap-learn; PCA when it
is not installed, and the page says so), drawn as SVG points that can be coloured by set, by cluster
(HDBSCAN, `seismo.embeddings.clusters`), by predicted class and by correctness where truth exists;
hovering a production point shows its prediction id and, for images, a thumbnail. Below, the
centroid distance of every embedding window over time against its threshold (the drift service's
results in the logger's drift log). Nothing is fetched at view time: data, script and thumbnails
are inline.
"""

from __future__ import annotations

import base64
import html
import io
import json
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class ReportData:
    model: str
    reference: np.ndarray
    production: np.ndarray
    ids: list[str] = field(default_factory=list)
    predicted: list[int | None] = field(default_factory=list)
    correct: list[bool | None] = field(default_factory=list)
    thumbnails: list[str | None] = field(default_factory=list)
    windows: list[dict] = field(default_factory=list)
    version: str | None = None
    skipped: int = 0  # records without an embedding comparable with the reference (another major/minor version)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as answer:  # noqa: S310 - an operator-given URL
        return json.loads(answer.read())


def _thumbnail(request: Any, index: int) -> str | None:
    """A PNG data URI of instance `index` of an image request (V1 instances or V2 inputs), else None."""
    try:
        if isinstance(request, dict) and "instances" in request:
            image = np.asarray(request["instances"][index], dtype=np.float32)
        elif isinstance(request, dict) and isinstance(request.get("inputs"), list):
            tensor = request["inputs"][0]
            image = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])[index]
        else:
            return None
        from PIL import Image
    except (ImportError, ValueError, TypeError, KeyError, IndexError):
        return None
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        return None
    pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).resize((64, 64), Image.Resampling.NEAREST).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def collect(logger_url: str, model: str, reference_path: Path, since: str | None = None, limit: int = 500,
            say: Callable[[str], None] = lambda _: None, metrics_url: str | None = None) -> ReportData:
    """Reference from the EmbeddingDrift folder, production embeddings and drift windows from the logger,
    correctness from the metrics server's joined feedback (where the record itself carries none)."""
    from seismo.detect import EmbeddingDrift, load_detector
    from seismo.embeddings.clusters import comparable, correctness

    detector = load_detector(reference_path)
    if not isinstance(detector, EmbeddingDrift) or detector.x_ref is None:
        raise ValueError(f"{reference_path} is not a fitted EmbeddingDrift (fit one with `seismo fit embedding`)")
    reference = np.asarray(detector.x_ref)
    base = logger_url.rstrip("/")
    params = {"model": model, "limit": "1000", **({"since": since} if since else {})}
    data = ReportData(model, reference, np.zeros((0, reference.shape[1])), version=getattr(detector, "version", None))
    vectors: list[list[float]] = []
    instance: list[int] = []
    seen: set[str] = set()
    while len(vectors) < limit:
        records = _get(f"{base}/v1/records?{urllib.parse.urlencode(params)}")["records"]
        fresh = [r for r in records if r["prediction_id"] not in seen]
        if not fresh:
            break
        for record in fresh:
            seen.add(record["prediction_id"])
            embedding = record.get("embedding")
            if not embedding or len(embedding[0]) != reference.shape[1] or not comparable(detector, record.get("embedding_version")):
                data.skipped += 1
                continue
            correct = correctness(record)
            response = record.get("response")
            predicted = None
            if isinstance(response, dict) and isinstance(response.get("outputs"), list):
                first = response["outputs"][0]
                predicted = np.asarray(first["data"], dtype=np.float64).reshape(first["shape"]).argmax(-1).tolist()
            elif isinstance(response, dict) and "predictions" in response:
                predicted = np.asarray(response["predictions"], dtype=np.float64).argmax(-1).tolist()
            for i, vector in enumerate(embedding):
                vectors.append(vector)
                data.ids.append(record["prediction_id"])
                data.predicted.append(predicted[i] if isinstance(predicted, list) and i < len(predicted) else None)
                data.correct.append(correct[i] if correct and i < len(correct) else None)
                data.thumbnails.append(_thumbnail(record.get("request"), i))
                instance.append(i)
        params["since"] = fresh[-1]["created_at"]
        say(f"  read {len(vectors)} production embeddings")
    data.production = np.asarray(vectors[:limit], dtype=np.float64).reshape(-1, reference.shape[1])
    for name in ("ids", "predicted", "correct", "thumbnails"):
        setattr(data, name, getattr(data, name)[:limit])
    if metrics_url:
        joined_correctness(data, instance[:limit], metrics_url, say)
    data.windows = _get(f"{base}/v1/drift?{urllib.parse.urlencode({'model': f'{model}/embedding'})}")["windows"]
    return data


def joined_correctness(data: ReportData, instance: list[int], metrics_url: str, say: Callable[[str], None]) -> None:
    """Fill correctness the records lack from the metrics server's `GET /v1/outcomes` (feedback is joined
    there, not written back onto every record); a metrics server that cannot answer is said, not fatal."""
    wanted = sorted({pid for pid, c in zip(data.ids, data.correct) if c is None})
    found: dict[str, list[dict]] = {}
    try:
        for start in range(0, len(wanted), 1000):
            query = urllib.parse.urlencode({"model": data.model, "ids": ",".join(wanted[start:start + 1000])})
            found.update(_get(f"{metrics_url.rstrip('/')}/v1/outcomes?{query}")["outcomes"])
    except (OSError, ValueError, KeyError) as exc:
        say(f"  correctness: the metrics server at {metrics_url} did not answer ({exc}); only feedback stored on records is shown")
        return
    filled = 0
    for j, (pid, i) in enumerate(zip(data.ids, instance)):
        rows = found.get(pid) or []
        if data.correct[j] is None and i < len(rows) and rows[i].get("correct") is not None:
            data.correct[j] = bool(rows[i]["correct"])
            filled += 1
    say(f"  correctness of {filled} production points from the metrics server's joined feedback")


def project_2d(points: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """(2-D coordinates, method): UMAP (n_neighbors 15, min_dist 0.1) when umap-learn is installed, else PCA."""
    try:
        import umap
    except ImportError:
        centred = points - points.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        return centred @ vt[:2].T, "PCA (umap-learn is not installed: pip install 'seismo[report]')"
    reducer = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=seed, n_jobs=1)
    return np.asarray(reducer.fit_transform(points)), "UMAP"


def script_json(value: Any) -> str:
    """JSON to place inside a <script> element. No "<" may appear in it: "</script>" would end the
    element, and "<!--" followed by "<script" switches the HTML parser into a state where the rest of
    the page is script text (a prediction id holding "<!--<script>" stopped the page drawing). "<", ">"
    and "&" are written as JSON escapes, which parse back to the same strings."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def build_html(data: ReportData, reference_sample: int = 500, seed: int = 0, say: Callable[[str], None] = lambda _: None) -> str:
    """The report page for `data` (reference sampled to `reference_sample` points)."""
    from seismo.embeddings.clusters import cluster_labels

    rng = np.random.default_rng(seed)
    reference = data.reference
    if len(reference) > reference_sample:
        reference = reference[np.sort(rng.choice(len(reference), reference_sample, replace=False))]
    points = np.concatenate([reference, data.production])
    say(f"  projecting {len(points)} points ({len(reference)} reference, {len(data.production)} production) ...")
    coords, method = project_2d(points, seed)
    say("  clustering ...")
    clusters = cluster_labels(coords, min_cluster_size=10).tolist()
    n_ref = len(reference)
    rows = []
    for i, (x, y) in enumerate(coords.tolist()):
        production = i >= n_ref
        j = i - n_ref
        rows.append({
            "x": round(x, 4), "y": round(y, 4), "set": "production" if production else "reference", "cluster": clusters[i],
            "id": data.ids[j] if production else None, "class": data.predicted[j] if production else None,
            "correct": data.correct[j] if production else None, "thumb": data.thumbnails[j] if production else None,
        })
    windows = [{"end": w.get("end"), "distance": w.get("euclidean_distance"), "threshold": w.get("distance_threshold"),
                "drift": w.get("is_drift")} for w in data.windows if w.get("euclidean_distance") is not None]
    payload = script_json({"points": rows, "windows": windows, "method": method.split(" ")[0]})
    title = f"Seismo embeddings: {data.model}"
    subtitle = (f"{len(data.production)} production and {n_ref} reference embeddings"
                f"{' of ' + data.version if data.version else ''}; projection: {method}"
                + (f"; {data.skipped} records of other versions or without an embedding left out" if data.skipped else ""))
    return _PAGE.replace("{{TITLE}}", html.escape(title)).replace("{{SUBTITLE}}", html.escape(subtitle)).replace("{{DATA}}", payload)


def write_report(out: Path, logger_url: str, model: str, reference_path: Path, since: str | None = None, limit: int = 500,
                 metrics_url: str | None = None) -> Path:
    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    say(f"reading {model}'s embeddings from {logger_url} ...")
    data = collect(logger_url, model, reference_path, since, limit, say, metrics_url)
    if len(data.production) == 0:
        raise ValueError(f"no stored embeddings for model {model!r}" + (f" since {since}" if since else ""))
    page = build_html(data, say=say)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    say(f"wrote {out} ({len(page) // 1024} KiB)")
    return out


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{TITLE}}</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 16px; color: #222; }
#plot, #drift { border: 1px solid #ccc; background: #fff; }
#tip { position: fixed; display: none; background: #fff; border: 1px solid #888; padding: 6px; pointer-events: none; font-size: 12px; }
#tip img { display: block; width: 64px; height: 64px; image-rendering: pixelated; margin-top: 4px; }
.legend span { display: inline-block; margin-right: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 5px; }
</style></head>
<body>
<h2>{{TITLE}}</h2><p>{{SUBTITLE}}</p>
<label>colour by <select id="colour">
  <option value="set">set</option><option value="cluster">cluster</option>
  <option value="class">predicted class</option><option value="correct">correctness</option>
</select></label>
<div class="legend" id="legend"></div>
<svg id="plot" width="760" height="560" xmlns="http://www.w3.org/2000/svg"></svg>
<h3>Centroid distance per embedding window</h3>
<div class="legend" id="drift-legend"><span><i style="background:#1f77b4"></i>distance</span><span><i style="background:#888"></i>threshold (dashed)</span><span><i style="background:#d62728"></i>window with drift</span></div>
<svg id="drift" width="760" height="250" xmlns="http://www.w3.org/2000/svg"></svg>
<div id="tip"></div>
<div id="status" data-points="0" data-errors="0" data-windows="0"></div>
<script>
"use strict";
const errors = [];
window.addEventListener("error", (e) => { errors.push(String(e.message)); report(); });
const DATA = {{DATA}};
const NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
function report() {
  const status = document.getElementById("status");
  status.dataset.points = document.querySelectorAll("#plot circle.pt").length;
  status.dataset.windows = document.querySelectorAll("#drift circle.win").length;
  status.dataset.errors = errors.length;
  status.textContent = errors.join("; ");
}
function colourOf(p, mode) {
  if (mode === "set") return p.set === "reference" ? "#9aa5b1" : "#d62728";
  if (mode === "cluster") return p.cluster < 0 ? "#dddddd" : PALETTE[p.cluster % PALETTE.length];
  if (mode === "class") return p.class === null ? "#dddddd" : PALETTE[p.class % PALETTE.length];
  return p.correct === null ? "#dddddd" : (p.correct ? "#2ca02c" : "#d62728");
}
function scale(values, lo, hi) {
  const min = Math.min(...values), max = Math.max(...values), span = (max - min) || 1;
  return (v) => lo + (v - min) / span * (hi - lo);
}
function text(svg, x, y, content, anchor, rotate) {
  const t = document.createElementNS(NS, "text");
  t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "11"); t.setAttribute("fill", "#444");
  if (anchor) t.setAttribute("text-anchor", anchor);
  if (rotate) t.setAttribute("transform", "rotate(-90 " + x + " " + y + ")");
  t.setAttribute("class", "axis"); t.textContent = content; svg.appendChild(t);
}
function rule(svg, x1, y1, x2, y2) {
  const l = document.createElementNS(NS, "line");
  l.setAttribute("x1", x1); l.setAttribute("y1", y1); l.setAttribute("x2", x2); l.setAttribute("y2", y2);
  l.setAttribute("stroke", "#bbb"); l.setAttribute("class", "axis"); svg.appendChild(l);
}
function drawPoints() {
  const svg = document.getElementById("plot"), tip = document.getElementById("tip");
  // A projection's axes have no units: they are named, not scaled.
  text(svg, 380, 556, DATA.method + " 1", "middle"); text(svg, 10, 280, DATA.method + " 2", "middle", true);
  const sx = scale(DATA.points.map((p) => p.x), 20, 740), sy = scale(DATA.points.map((p) => p.y), 540, 20);
  DATA.points.forEach((p, i) => {
    const c = document.createElementNS(NS, "circle");
    c.setAttribute("class", "pt " + p.set);
    c.setAttribute("cx", sx(p.x).toFixed(1)); c.setAttribute("cy", sy(p.y).toFixed(1));
    c.setAttribute("r", p.set === "reference" ? 3 : 4);
    c.dataset.i = i;
    c.addEventListener("mouseenter", (e) => {
      tip.innerHTML = "";
      const line = document.createElement("div");
      line.textContent = p.set === "reference" ? "reference" : "prediction " + p.id + (p.class === null ? "" : ", class " + p.class)
        + (p.correct === null ? "" : (p.correct ? ", correct" : ", wrong")) + ", cluster " + p.cluster;
      tip.appendChild(line);
      if (p.thumb) { const img = document.createElement("img"); img.src = p.thumb; tip.appendChild(img); }
      tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px"; tip.style.display = "block";
    });
    c.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    svg.appendChild(c);
  });
}
function recolour() {
  const mode = document.getElementById("colour").value;
  document.querySelectorAll("#plot circle.pt").forEach((c) => c.setAttribute("fill", colourOf(DATA.points[c.dataset.i], mode)));
  const legend = document.getElementById("legend");
  legend.innerHTML = "";
  const entries = mode === "set" ? [["reference", "#9aa5b1"], ["production", "#d62728"]]
    : mode === "correct" ? [["correct", "#2ca02c"], ["wrong", "#d62728"], ["no truth", "#dddddd"]]
    : [[mode === "cluster" ? "noise / none" : "unknown", "#dddddd"]].concat(
        [...new Set(DATA.points.map((p) => mode === "cluster" ? p.cluster : p.class).filter((v) => v !== null && v >= 0))]
          .sort((a, b) => a - b).map((v) => [String(v), PALETTE[v % PALETTE.length]]));
  entries.forEach(([label, colour]) => {
    const s = document.createElement("span"), i = document.createElement("i");
    i.style.background = colour; s.appendChild(i); s.appendChild(document.createTextNode(label)); legend.appendChild(s);
  });
}
function drawDrift() {
  const svg = document.getElementById("drift"), w = DATA.windows;
  if (!w.length) {
    const t = document.createElementNS(NS, "text"); t.setAttribute("x", 20); t.setAttribute("y", 30);
    t.textContent = "no embedding window tested yet"; svg.appendChild(t); return;
  }
  const values = w.flatMap((v) => [v.distance, v.threshold || 0]);
  const top = Math.max(...values) || 1;
  const sx = scale(w.map((_, i) => i), 70, 740), sy = scale([0, top], 200, 20);
  // Axes: the distance (y, with its value at 0, half and the top) and the windows (x, first and last end time).
  rule(svg, 70, 200, 740, 200); rule(svg, 70, 20, 70, 200);
  [0, top / 2, top].forEach((v) => { text(svg, 64, sy(v) + 4, v.toPrecision(3), "end"); rule(svg, 66, sy(v), 70, sy(v)); });
  text(svg, 14, 110, "centroid distance", "middle", true);
  const when = (v, i) => v.end ? String(v.end).replace("T", " ").slice(0, 19) : "window " + (v.window ?? i);
  text(svg, 70, 218, when(w[0], 0), "start");
  if (w.length > 1) text(svg, 740, 218, when(w[w.length - 1], w.length - 1), "end");
  text(svg, 405, 240, "embedding windows, oldest to newest (" + w.length + ")", "middle");
  const line = (key, colour, dash) => {
    const path = document.createElementNS(NS, "polyline");
    path.setAttribute("points", w.map((v, i) => sx(i).toFixed(1) + "," + sy(v[key] || 0).toFixed(1)).join(" "));
    path.setAttribute("fill", "none"); path.setAttribute("stroke", colour);
    if (dash) path.setAttribute("stroke-dasharray", "4 3");
    svg.appendChild(path);
  };
  line("threshold", "#888", true); line("distance", "#1f77b4", false);
  w.forEach((v, i) => {
    const c = document.createElementNS(NS, "circle");
    c.setAttribute("class", "win"); c.setAttribute("cx", sx(i).toFixed(1)); c.setAttribute("cy", sy(v.distance).toFixed(1));
    c.setAttribute("r", 3); c.setAttribute("fill", v.drift ? "#d62728" : "#1f77b4");
    const title = document.createElementNS(NS, "title");
    title.textContent = (v.end || "") + ": distance " + v.distance.toFixed(4) + " (threshold " + (v.threshold || 0).toFixed(4) + ")";
    c.appendChild(title); svg.appendChild(c);
  });
}
drawPoints();
document.getElementById("colour").addEventListener("change", recolour);
recolour();
drawDrift();
report();
</script>
</body></html>
"""
