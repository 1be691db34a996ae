# The two commands a new machine needs: `make demo` and `make test`. Each sets up what it needs, with
# exactly the versions pinned in uv.lock (uv itself comes from PyPI, pinned here).
PYTHON ?= python3
UV_VERSION := 0.13.9
UV     := .uv/bin/uv
VENV   := .venv
BIN    := $(VENV)/bin
# What the demo runs: the model servers and detectors (TensorFlow, scikit-learn) and the explainer.
RUNTIME_EXTRAS := --extra model --extra explain
RUNTIME := $(VENV)/.installed-runtime
DEV     := $(VENV)/.installed-dev
MODEL  := models/artifacts/image-classifier/metadata.json
DETECTORS := models/artifacts/detectors/adversarial/config.json
TABULAR := models/artifacts/tabular-classifier/metadata.json
EXAMPLES := $(MODEL) $(DETECTORS) $(TABULAR)
SYNC := $(UV) sync --frozen --python $(PYTHON)
# The client conformance environments (below): KServe's SDK and SeldonClient.
CLIENTS := .venv-kserve/.installed .venv-seldon/.installed

.PHONY: demo test test-fast test-slow lint bench up model install clean alibi nannyml lock clients images

demo: $(RUNTIME) $(EXAMPLES)
	$(BIN)/seismo demo

# The suite a developer runs before every commit (the soak and other `slow` tests: `make test-slow`).
test: $(DEV) $(EXAMPLES) $(CLIENTS) lint
	$(BIN)/python -m pytest -m "not slow"

# Everything that starts no process (under a minute): `pytest -m "not integration and not slow"`.
test-fast: $(DEV) $(EXAMPLES)
	$(BIN)/python -m pytest -m "not integration and not slow"

# The long tests (the soak); .ci/run runs them after `make test`.
test-slow: $(DEV) $(EXAMPLES)
	$(BIN)/python -m pytest -m slow

# Part of `make test`: the shape CI keeps (style, import order, types of seismo/).
lint: $(DEV)
	$(BIN)/ruff check seismo tests bench models manifests
	$(BIN)/mypy

bench: $(DEV) $(EXAMPLES)
	$(BIN)/python -m bench

up: $(RUNTIME) $(EXAMPLES)
	$(BIN)/seismo up

install: $(DEV)

model: $(EXAMPLES)

# After editing pyproject.toml's dependencies: `make lock` (keeps every other pin);
# `make lock UPGRADE=1` moves every package to its newest allowed release on purpose.
lock: $(UV)
	$(UV) lock $(if $(UPGRADE),--upgrade,)
	$(ALIBI_COMPILE) $(if $(UPGRADE),--upgrade,)
	$(NANNYML_COMPILE) $(if $(UPGRADE),--upgrade,)
	$(foreach client,kserve seldon,$(call CLIENT_COMPILE,$(client)) $(if $(UPGRADE),--upgrade,);)

$(UV):
	@echo "==> installing uv $(UV_VERSION) into .uv (it installs everything else from uv.lock)"
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --inexact: a demo run after `make test` keeps the test tools in place.
$(RUNTIME): $(UV) uv.lock pyproject.toml
	@echo "==> installing Seismo's runtime ($(RUNTIME_EXTRAS)) into $(VENV) from uv.lock (first time: about a minute)"
	$(SYNC) --inexact $(RUNTIME_EXTRAS)
	touch $@

$(DEV): $(UV) uv.lock pyproject.toml
	@echo "==> installing Seismo with every extra and the test tools into $(VENV) from uv.lock (first time: about a minute)"
	$(SYNC) --extra dev
	touch $@ $(RUNTIME)

$(MODEL): $(RUNTIME) models/image_classifier.py
	@echo "==> training the example image classifier (scikit-learn digits as 32x32x3, about 30 s)"
	$(BIN)/python -m models.image_classifier

clean:
	rm -rf $(VENV) .venv-kserve .venv-seldon .uv .seismo models/artifacts

$(TABULAR): $(RUNTIME) models/tabular_classifier.py
	@echo "==> training the example tabular model (scikit-learn wine, about a second)"
	$(BIN)/python -m models.tabular_classifier

$(DETECTORS): $(MODEL) models/detectors.py
	@echo "==> fitting the example drift, outlier and adversarial detectors (a few seconds)"
	$(BIN)/python -m models.detectors

# Optional: alibi-detect 0.13 and alibi 0.9.6 in their own environment (they pin numpy<2 and
# TensorFlow<2.19), for the cross-check tests and the comparison columns of `make bench`. Business Source
# License: comparison only. It cannot share uv.lock's resolution (TensorFlow 2.20+), so it has its own
# lock with hashes, requirements/alibi.txt, compiled from requirements/alibi.in by `make lock`.
ALIBI_COMPILE := $(UV) pip compile requirements/alibi.in --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	--generate-hashes --quiet -o requirements/alibi.txt

.venv-alibi/.installed: $(UV) requirements/alibi.txt
	@echo "==> creating .venv-alibi with alibi-detect 0.13 and alibi 0.9.6 from requirements/alibi.txt (comparison only; several minutes)"
	$(UV) venv --quiet --allow-existing --python $(PYTHON) .venv-alibi
	$(UV) pip sync --python .venv-alibi/bin/python --require-hashes requirements/alibi.txt
	touch .venv-alibi/.installed

alibi: .venv-alibi/.installed

# Optional: NannyML 0.13 (Apache-2.0) in its own environment for the CBPE cross-check (bench/cbpe_crosscheck.py);
# it pulls pandas, LightGBM and plotly, which Seismo does not need. Locked with hashes in requirements/nannyml.txt.
NANNYML_COMPILE := $(UV) pip compile requirements/nannyml.in --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	--generate-hashes --quiet -o requirements/nannyml.txt

.venv-nannyml/.installed: $(UV) requirements/nannyml.txt
	@echo "==> creating .venv-nannyml with NannyML 0.13 from requirements/nannyml.txt (comparison only; a few minutes)"
	$(UV) venv --quiet --allow-existing --python $(PYTHON) .venv-nannyml
	$(UV) pip sync --quiet --python .venv-nannyml/bin/python --require-hashes requirements/nannyml.txt
	touch $@

nannyml: .venv-nannyml/.installed

# The clients platform teams already run, each in an environment of its own because they pin protobuf
# and numpy versions Seismo's cannot share: KServe's SDK (.venv-kserve) and seldon-core's SeldonClient
# (.venv-seldon). tests/hostile/test_clients.py runs them against a real `seismo up`. Locked with hashes
# in requirements/<name>-client.txt by `make lock`.
CLIENT_COMPILE = $(UV) pip compile requirements/$(1)-client.in --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	--generate-hashes --quiet -o requirements/$(1)-client.txt

.venv-%/.installed: $(UV) requirements/%-client.txt
	@echo "==> creating .venv-$* for the client conformance tests from requirements/$*-client.txt"
	$(UV) venv --quiet --allow-existing --python $(PYTHON) .venv-$*
	$(UV) pip sync --quiet --python .venv-$*/bin/python --require-hashes requirements/$*-client.txt
	touch $@

clients: $(CLIENTS)

# Every service's container image from docker/Dockerfile (needs Docker; none runs on the development
# machine, so this target is not exercised by the suite): <REGISTRY>/<service>:<version>[-gpu], one per
# row of the service table (`python docker/build.py --images`), the version pyproject.toml and the
# chart's appVersion name (a test keeps the three equal), so `helm install` pulls what was built.
REGISTRY ?= ghcr.io/seismo
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)

images: $(RUNTIME)
	@command -v docker >/dev/null || { echo "make images needs Docker (docker build)"; exit 2; }
	$(BIN)/python docker/build.py --images | while read name suffix extras ports; do \
	  [ "$$suffix" = - ] && suffix=; [ "$$extras" = - ] && extras=; \
	  echo "building $(REGISTRY)/$$name:$(VERSION)$$suffix"; \
	  docker build -f docker/Dockerfile --build-arg SERVICE=$$name --build-arg EXTRAS=$$extras \
	    --build-arg PORTS="$$(echo $$ports | tr , ' ')" -t $(REGISTRY)/$$name:$(VERSION)$$suffix . || exit 1; \
	done
