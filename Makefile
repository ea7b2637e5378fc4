# Two commands on a fresh machine:
#   make run    the main job: a Ray Tune sweep of CL+LSTM label injection on Omniglot (local Ray),
#               every distinct mode x SAMPLES seeds, then the results table and where the files went
#   make test   the test suite (what .ci/run calls)
SHELL := /bin/bash
SAMPLES ?= 1
ARGS ?=

.PHONY: setup run test test-fast bench clean

setup:
	@bash scripts/setup.sh

run: setup
	@source scripts/offline-env.sh && \
	  .venv/bin/priorlab data download omniglot && \
	  .venv/bin/priorlab sweep memory-label-injection lr=0.01 channels=8 --stream local --samples $(SAMPLES) $(ARGS)

# The data step fetches what the tests read (Omniglot) into the data root if it is missing; files
# already there are only checked, so a read-only data root (CI: ../shared/datasets) is not written.
# scripts/setup_browser.sh installs Debian's chromium + chromium-driver (once) for the dashboard's
# browser test.
test: setup
	@bash scripts/setup_browser.sh && source scripts/offline-env.sh && \
	  .venv/bin/priorlab data download omniglot && .venv/bin/python -m pytest

test-fast: setup
	@source scripts/offline-env.sh && .venv/bin/priorlab data download omniglot && \
	  .venv/bin/python -m pytest -m "not integration"

bench: setup
	@source scripts/offline-env.sh && for b in flops stream overhead; do .venv/bin/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf .venv runs
