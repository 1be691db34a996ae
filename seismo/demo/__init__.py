"""`seismo demo`: the walkthrough (predictions through the local stack) and its three scenarios.

`walkthrough` runs the stack and the story; `detection` (clean vs corrupted traffic, drift and
outliers), `feedback` (ground truth in two cohorts) and `explain` (anchors on one image, one row) are
its parts; `corruptions` makes the corrupted images (also used by bench/drift_quality.py).
"""

from seismo.demo.walkthrough import run_demo

__all__ = ["run_demo"]
