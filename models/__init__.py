"""The example models and their detectors: `make model` trains and fits them into models/artifacts/."""
