"""Text embeddings without downloads: wordllama's 256-d static token embeddings, weights in its wheel.

An optional extra (`pip install 'seismo[text]'`): `wordllama` (MIT code; its weights derive from the
LLaMA 2 and phi-3 token tables, so check their terms before shipping them in a product). Nothing is
fetched at run time: the model is loaded from the package's own folder with downloads disabled
(`WordLlama.load()` alone looks for its tokenizer elsewhere and tries the network).

For a text model whose own layers are out of reach, these are the embeddings document's "general
pre-trained model over the data": the same EmbeddingDrift, report and clusters work on them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

SPACE = "wordllama/l2_supercat_256"


def version() -> str:
    """The embedding version of these vectors: the space at the package's version (`0.4.0.post1` -> `0.4.0`)."""
    from importlib.metadata import version as package_version

    major, minor, patch = (package_version("wordllama").split(".") + ["0", "0"])[:3]
    return f"{SPACE}@{int(major)}.{int(minor)}.{int(''.join(c for c in patch if c.isdigit()) or 0)}"


@lru_cache(maxsize=1)
def _model() -> Any:
    try:
        import wordllama
    except ImportError:
        raise ValueError("text embeddings need the text extra: pip install 'seismo[text]'") from None
    return wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)


def embed_texts(texts: list[str]) -> tuple[np.ndarray, str]:
    """(embeddings [n, 256], version) of `texts`."""
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("embed_texts needs a non-empty list of strings")
    return np.asarray(_model().embed(texts), dtype=np.float64), version()
