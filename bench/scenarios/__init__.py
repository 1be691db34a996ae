"""Failure modes produced on purpose for the diagnosis tests and benchmark: wine (the example tabular model) and digits (the example CNN). Not part of the installed package."""
