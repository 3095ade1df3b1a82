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

# The bundled default model (seeded, CPU, one thread so the weights are reproducible bit for bit).
DEFAULT_MODEL := hyena_glt/pretrained/promoter-tiny
GUE := example_data/gue/prom_core_all
default-model: $(STAMP)
	rm -rf $(DEFAULT_MODEL)
	$(PY) -m hyena_glt_cli -@ 1 --seed 1 train $(GUE)/train.csv --val $(GUE)/dev.csv --test $(GUE)/test.csv \
	    --task classification --preset tiny --d-model 64 --set d_inner=256 --dropout 0.1 \
	    --epochs 3 --batch-size 128 --lr 2e-3 \
	    --class-names 0=non_promoter,1=promoter --device cpu --no-keep-checkpoints \
	    --meta 'benchmark={"task":"GUE prom_core_all (human core promoter vs non-promoter, 70 nt)","split":"test","reference_model":"DNABERT-2","reference_test_mcc":69.37}' \
	    -o $(DEFAULT_MODEL)

bench: $(STAMP)
	$(VENV)/bin/hyena-glt benchmark --quick

clean:
	rm -rf $(VENV) .pytest_cache
