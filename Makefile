# hyena-glt: `make demo` and `make test` each set up a virtual environment (once) and run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test setup default-model bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch first where none is installed: a bare `torch` can pull a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0 || $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hyena-glt classify example_data/MT-human.fa -o demo_promoters.bed
	@echo "wrote demo_promoters.bed (open it in IGV next to example_data/MT-human.fa)" >&2

test: $(STAMP)
	$(PY) -m pytest -q

default-model: $(STAMP)
	$(PY) -m hyena_glt_cli train --task classification --preset tiny \
	    ../shared/data/gue/prom/prom_core_all/train.csv \
	    --val ../shared/data/gue/prom/prom_core_all/dev.csv \
	    --test ../shared/data/gue/prom/prom_core_all/test.csv \
	    --seed 1 -o hyena_glt/pretrained/promoter-tiny

bench: $(STAMP)
	$(VENV)/bin/hyena-glt benchmark --quick

clean:
	rm -rf $(VENV) .pytest_cache
