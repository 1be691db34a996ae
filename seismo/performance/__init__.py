"""Performance from ground truth: metric config, scoring feedback, the durable ledger, the reports.

The metrics server (`seismo.services.metrics`) is HTTP around these; the statistics themselves live
in `seismo.stats.model_metrics`.
"""
