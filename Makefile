# AIRCTRL developer commands. `make run` and `make test` set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
AIRCTRL := $(VENV)/bin/airctrl
DEV_MANIFEST ?= ../shared/data/dev/manifest.csv

.PHONY: setup run test bench bench-api bench-still soak evaluate calibrate lint typecheck

setup:
	bash scripts/setup.sh

run: setup
	$(AIRCTRL) run --source "$$($(AIRCTRL) assets path)/media/WolfgangLanger_Pexels.mp4" --headless --output-dir out/run

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) benchmarks/bench_pipeline.py

bench-api: setup
	$(PY) benchmarks/bench_api.py

bench-still: setup
	$(PY) benchmarks/bench_still_detection.py

soak: setup
	$(PY) benchmarks/soak.py

lint:
	$(VENV)/bin/ruff check src tests benchmarks

typecheck:
	$(VENV)/bin/mypy

evaluate: setup
	$(AIRCTRL) evaluate --manifest $(DEV_MANIFEST) --group-by dataset,sex,ethnicity --output-dir reports/eval

calibrate: setup
	$(AIRCTRL) calibrate --manifest $(DEV_MANIFEST) --output src/airctrl/data/emotion_params.json --cv
