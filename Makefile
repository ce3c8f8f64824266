# `make demo` and `make test` work on a fresh machine: they create .venv when it is
# missing, install system and Python dependencies once (re-run only when pyproject.toml
# or the constraints change), then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONSTRAINTS ?= constraints-cpu.txt
SYSTEM_PACKAGES := libportaudio2 chromium iproute2

.PHONY: demo test test-fast model bench bench-quick system-deps clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@$(MAKE) --no-print-directory system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev,mic,webrtc,bench,cluster]'
	@touch $(STAMP)

# Debian packages: PortAudio for the microphone source (PyAV wheels bundle ffmpeg); Chromium and
# iproute2 for the serve tests (a headless browser in a private network namespace). Installed
# only when missing; needs root (as on the CI machines) or sudo.
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

demo: $(STAMP)
	$(VENV)/bin/streamer demo

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# The bundled model's whole training recipe (training/recipe.py, BUNDLED_RECIPE) into runs/tiny: about
# 2.5 hours on 2 CPU cores. Stopped, the same command continues where it stopped.
RECIPE_OUT ?= runs/tiny
model: $(STAMP)
	$(VENV)/bin/streamer recipe --out $(RECIPE_OUT)

# The benchmark suite (bench/README.md); run it on a quiet machine. `bench` publishes: results and
# plots in bench/results/, the tables in bench/README.md and README.md. `bench-quick` (~2 minutes)
# writes to build/bench-quick/ and prints its tables, leaving the published results alone.
BENCH_THREADS ?= 2
BENCH_ARGS ?=
bench: $(STAMP)
	@mkdir -p build
	$(PY) -m pytest bench --bench-size full --bench-threads $(BENCH_THREADS) --benchmark-json build/bench-run.json $(BENCH_ARGS)
	$(PY) -m bench.report build/bench-run.json --readme bench/README.md --readme README.md

bench-quick: $(STAMP)
	@mkdir -p build
	$(PY) -m pytest bench --bench-size quick --bench-threads $(BENCH_THREADS) --benchmark-json build/bench-quick.json $(BENCH_ARGS)
	$(PY) -m bench.report build/bench-quick.json --results build/bench-quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
