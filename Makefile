# hyena-glt: `make demo` and `make test` each set up a virtual environment (once) and run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test setup default-model dna-lm bench clean

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

# The bundled DNA language model (`--init dna-lm-tiny`, `--entropy-model dna-lm-tiny`): 4,800 steps x 32 x <=512 nt of
# next-base prediction over the unlabelled DNA in example_data: C. elegans, the A. thaliana chloroplast, phage
# lambda, human and orangutan mitochondria, and the sequences (not labels) of the GUE prom_core_all and mouse_2
# training splits; no dev or test split. Seeded, two threads (10 min on the 2-core machine): the last bits of the
# weights may differ between CPUs and thread counts.
DNA_LM := hyena_glt/pretrained/dna-lm-tiny
LM_CORPUS := build/dna_lm_corpus.fa
LM_CORPUS_NOTE := {"built_by":"make dna-lm","sha256":"604cc9b960dce2bc502b4d0a1faf76d958c1e4009c002f877c3fe20158d93694","records":49987,"contents":"example_data ce.fa, arabidopsis_chloroplast.fa, lambda_virus.fa, MT-human.fa, MT-orang.fa; sequences of gue/prom_core_all/train.csv and gue/mouse_2/train.csv"}
$(LM_CORPUS): example_data/ce.fa example_data/gue/prom_core_all/train.csv example_data/gue/mouse_2/train.csv
	mkdir -p build
	{ cat example_data/ce.fa example_data/arabidopsis_chloroplast.fa example_data/lambda_virus.fa \
	      example_data/MT-human.fa example_data/MT-orang.fa; \
	  awk -F, 'NR > 1 { print ">prom_core_all_train_" NR - 2; print $$1 }' example_data/gue/prom_core_all/train.csv; \
	  awk -F, 'NR > 1 { print ">mouse_2_train_" NR - 2; print $$1 }' example_data/gue/mouse_2/train.csv; \
	} | grep -v '^$$' > $@.tmp
	echo "604cc9b960dce2bc502b4d0a1faf76d958c1e4009c002f877c3fe20158d93694  $@.tmp" | sha256sum -c --quiet
	mv $@.tmp $@
dna-lm: $(STAMP) $(LM_CORPUS)
	rm -rf $(DNA_LM)
	$(PY) -m hyena_glt_cli -@ 2 --seed 1 train $(LM_CORPUS) --task lm --window 512 --max-steps 4800 --batch-size 32 \
	    --lr 2e-3 --val-fraction 0.02 --eval-every 1600 --device cpu --no-keep-checkpoints \
	    --meta 'corpus=$(LM_CORPUS_NOTE)' -o $(DNA_LM)

bench: $(STAMP)
	$(VENV)/bin/hyena-glt benchmark --quick

clean:
	rm -rf $(VENV) .pytest_cache
