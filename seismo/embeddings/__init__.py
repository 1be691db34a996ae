"""Embeddings: their versions, how they travel on events, the version check, clusters and the report.

The drift detector for embeddings is `seismo.detect.EmbeddingDrift`; the statistics it uses are in
`seismo.stats.centroid`.
"""

from seismo.embeddings.version import EmbeddingVersion, EmbeddingVersionError, VersionChange, compare_versions

__all__ = ["EmbeddingVersion", "EmbeddingVersionError", "VersionChange", "compare_versions"]
