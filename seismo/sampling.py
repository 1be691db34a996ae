"""Sampling with exact accounting: a detector may watch a share of a model's predictions, the same ones everywhere.

A prediction is in the sample when a hash of its id falls below the share, so every replica of a
detector, the request and the response of one prediction, and a redelivery all decide alike without
talking to each other. Payload logging is never sampled: the logger stores every prediction. The share
is on every result and in `seismo_<service>_sample_share`; what was left out is counted in
`seismo_<service>_events_sampled_out_total`, so rates and window sizes can be read back to traffic.
"""

from __future__ import annotations

import hashlib


def in_sample(prediction_id: str, share: float) -> bool:
    """Whether this prediction is among the `share` (0 < share <= 1) of all predictions a detector watches."""
    if share >= 1.0:
        return True
    digest = hashlib.blake2b(prediction_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * 2.0**64
