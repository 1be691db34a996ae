# The two commands a new machine needs: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODEL  := models/artifacts/image-classifier/metadata.json
DETECTORS := models/artifacts/detectors/adversarial/config.json
TABULAR := models/artifacts/tabular-classifier/metadata.json
EXAMPLES := $(MODEL) $(DETECTORS) $(TABULAR)

.PHONY: demo test lint bench up model install clean alibi

demo: $(EXAMPLES)
	$(BIN)/seismo demo

test: $(EXAMPLES) lint
	$(BIN)/python -m pytest

# Part of `make test`: the shape CI keeps (style, import order, types of seismo/).
lint: $(STAMP)
	$(BIN)/ruff check seismo tests bench models manifests
	$(BIN)/mypy

bench: $(EXAMPLES)
	$(BIN)/python -m bench

up: $(EXAMPLES)
	$(BIN)/seismo up

install: $(STAMP)

model: $(EXAMPLES)

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing Seismo with its model and test extras (first time: about a minute)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar on -e '.[dev]'
	touch $(STAMP)

$(MODEL): $(STAMP) models/image_classifier.py
	@echo "==> training the example image classifier (scikit-learn digits as 32x32x3, about 30 s)"
	$(BIN)/python -m models.image_classifier

clean:
	rm -rf $(VENV) .seismo models/artifacts

$(TABULAR): $(STAMP) models/tabular_classifier.py
	@echo "==> training the example tabular model (scikit-learn wine, about a second)"
	$(BIN)/python -m models.tabular_classifier

$(DETECTORS): $(MODEL) models/detectors.py
	@echo "==> fitting the example drift, outlier and adversarial detectors (a few seconds)"
	$(BIN)/python -m models.detectors

# Optional: alibi-detect 0.13 and alibi 0.9.6 in their own environment (they pin numpy<2 and
# TensorFlow<2.19), for the cross-check tests and the comparison columns of `make bench` (alibi's
# spaCy import needs click, which its wheel does not pull in). Business Source License: comparison only.
.venv-alibi/.installed:
	@echo "==> creating .venv-alibi with alibi-detect 0.13 and alibi 0.9.6 (comparison only; several minutes)"
	$(PYTHON) -m venv .venv-alibi
	.venv-alibi/bin/pip install "alibi-detect[tensorflow]==0.13.0" "alibi==0.9.6" click "numpy<2"
	touch .venv-alibi/.installed

alibi: .venv-alibi/.installed
