# Two commands: `make run` (set up and start the app) and `make test` (set up and run every test).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Offscreen OpenGL for the catalogue renderer (no display, no GPU).
export PYOPENGL_PLATFORM := osmesa

.PHONY: run example-shop test system-deps gallery bench-quality bench-speed

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt requirements-scale.txt
	$(PY) -m pip install -r requirements-dev.txt
	touch $@

# axe-core, the accessibility checker the browser tests run on the page (npm registry).
AXE := .cache/axe/node_modules/axe-core/axe.min.js
$(AXE):
	npm install --silent --no-audit --no-fund --prefix .cache/axe axe-core@4.14.1

# Debian packages the tests need (headless Chromium, OSMesa), installed only when missing.
system-deps:
	@missing=$$(for p in $$(cat apt-packages.txt); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $$missing; fi

run: $(VENV)/.runtime
	$(PY) app.py

# The example shop: a made-up Merchant feed for the bundled catalogue, served on 127.0.0.1, indexed and searched.
example-shop: $(VENV)/.runtime
	$(PY) -m example_shop

test: system-deps $(VENV)/.dev $(AXE)
	$(PY) -m pytest

# Render the bundled catalogue (reference_gallery/, benchmarks/queries/) from Sweet Home 3D models: docs/gallery.md.
gallery: system-deps $(VENV)/.dev
	$(PY) -m pip install -r requirements-gallery.txt
	$(PY) -m buildtime.catalogue build

bench-quality: $(VENV)/.dev
	$(PY) -m benchmarks.quality

bench-speed: $(VENV)/.dev
	$(PY) -m benchmarks.speed
