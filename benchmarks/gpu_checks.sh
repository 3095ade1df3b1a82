#!/usr/bin/env bash
# GPU checks and timings in one go, for a machine with a CUDA GPU and hyena-glt installed:
#   bash benchmarks/gpu_checks.sh RESULTS_DIR [BENCH_DIR]
# 1. tests/test_cuda.py (CUDA equals CPU, mixed precision, chunked megabase path, train + classify on CUDA);
# 2. HyenaDNA (BENCH_DIR/bench_peer.py, default ../shared/bench) against hyena-glt, forward by forward, fp32
#    and bf16, tiny and small;
# 3. `hyena-glt benchmark` on CUDA (bf16) from 1k to 1M, with the attention baseline;
# 4. user-level timings: classify a 1 Mb genome and train on GUE mouse_2, GPU against all CPU cores;
# 5. the whole test suite with the CLI's device left on auto (so CLI tests run on the GPU).
# Each step has its own time limit and log in RESULTS_DIR; the summary is printed last. BUDGET_S (default 1500)
# bounds the whole run: a step gets at most what is left of it.
set -u
results=${1:?usage: gpu_checks.sh RESULTS_DIR [BENCH_DIR]}
bench=${2:-../shared/bench}
mkdir -p "$results"
export PYTHONUNBUFFERED=1
deadline=$((SECONDS + ${BUDGET_S:-1500}))
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    local start=$SECONDS left=$((deadline - SECONDS))
    if ((left < 20)); then echo "== $name: skipped (budget spent)" | tee -a "$results/summary.txt"; return; fi
    ((limit > left)) && limit=$left
    timeout "$limit" "$@" > "$results/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc, $((SECONDS - start)) s" | tee -a "$results/summary.txt"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$results/summary.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$results/summary.txt"
step test_cuda 240 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py
step peer_tiny 150 python3 benchmarks/ab_peer.py --device cuda --bf16 --config tiny --repeats 10 \
    --bench-dir "$bench" --shapes 1x1024,8x1024,64x1024,1x8192,16x8192,1x32768,4x32768,1x131072,1x1048576
step peer_small 150 python3 benchmarks/ab_peer.py --device cuda --bf16 --config small --repeats 10 \
    --bench-dir "$bench" --shapes 1x1024,8x1024,64x1024,1x8192,16x8192,1x32768,4x32768,1x131072
step benchmark 200 hyena-glt benchmark --device cuda --precision bf16 --repeats 10 \
    --lengths 1k,8k,32k,128k,1M --patchers none,static:4 -o "$results/benchmark.tsv"
step classify_gpu 120 bash -c "time hyena-glt classify example_data/ce.fa -o $results/ce_gpu.bed"
step classify_cpu 120 bash -c "time hyena-glt classify --device cpu example_data/ce.fa -o $results/ce_cpu.bed"
step train_gpu 150 bash -c "time hyena-glt train example_data/gue/mouse_2/train.csv --val example_data/gue/mouse_2/dev.csv --epochs 2 -o $results/m2"
step suite 300 python3 -m pytest -q -p no:cacheprovider -n 8 tests
for f in peer_tiny peer_small; do echo "-- $f"; cat "$results/$f.log"; done
echo "-- benchmark"; cat "$results/benchmark.tsv" 2>/dev/null
grep -h "^real\|passed\|failed" "$results"/*.log | tail -20
cat "$results/summary.txt"
