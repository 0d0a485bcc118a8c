# AIRCTRL developer commands. `make run` and `make test` set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
AIRCTRL := $(VENV)/bin/airctrl
DEV_MANIFEST ?= ../shared/data/dev/manifest.csv

.PHONY: setup run test bench evaluate calibrate lint typecheck soak

setup:
	bash scripts/setup.sh

run: setup
	$(AIRCTRL) run --source "$$($(AIRCTRL) assets path)/media/WolfgangLanger_Pexels.mp4" --headless --output-dir out/run

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) benchmarks/bench_pipeline.py

lint:
	$(VENV)/bin/ruff check src tests benchmarks

typecheck:
	$(VENV)/bin/mypy

evaluate:
	$(AIRCTRL) evaluate --manifest $(DEV_MANIFEST) --group-by dataset,sex,ethnicity --output-dir reports/eval

calibrate:
	$(AIRCTRL) calibrate --manifest $(DEV_MANIFEST) --output src/airctrl/data/emotion_params.json --cv
