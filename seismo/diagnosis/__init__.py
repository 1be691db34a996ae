"""Diagnosis: which failure mode a model suffers (`GET /v1/diagnosis`, `seismo diagnose`).

`rules` decides from `Evidence`; `evidence` and `cascade` measure it from the metrics server's ledger
and the record store; `reference` reads the training inputs and validation performance; `report`
puts them together per model and cohort; `scenarios` produces each failure mode on purpose.
"""
