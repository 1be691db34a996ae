# The two commands a new machine needs: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODEL  := models/artifacts/image-classifier/metadata.json
DETECTORS := models/artifacts/detectors/drift/config.json

.PHONY: demo test bench up model install clean alibi

demo: $(MODEL) $(DETECTORS)
	$(BIN)/seismo demo

test: $(MODEL) $(DETECTORS)
	$(BIN)/python -m pytest

bench: $(MODEL) $(DETECTORS)
	$(BIN)/python -m bench

up: $(MODEL) $(DETECTORS)
	$(BIN)/seismo up

install: $(STAMP)

model: $(MODEL) $(DETECTORS)

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

$(DETECTORS): $(MODEL) models/detectors.py
	@echo "==> fitting the example drift and outlier detectors (a few seconds)"
	$(BIN)/python -m models.detectors

# Optional: alibi-detect 0.13 in its own environment (it pins numpy<2 and TensorFlow<2.19), for the
# cross-check tests and the comparison columns of `make bench`. Business Source License: comparison only.
.venv-alibi/.installed:
	@echo "==> creating .venv-alibi with alibi-detect 0.13 (comparison only; several minutes)"
	$(PYTHON) -m venv .venv-alibi
	.venv-alibi/bin/pip install "alibi-detect[tensorflow]==0.13.0" "numpy<2"
	touch .venv-alibi/.installed

alibi: .venv-alibi/.installed
