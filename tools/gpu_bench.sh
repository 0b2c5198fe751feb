#!/usr/bin/env bash
# The GPU benchmark, prepared for a session that is lent a GPU (one run, about 5 minutes):
#
#     device run: command "bash tools/gpu_bench.sh", timeout_s 540
#
# Uses the GPU machine's own python3 (it holds torch, torchvision, transformers, peft,
# click): no install. Measures training steps of the two-tower model on synthetic
# batches (tools/bench_models.py --one): the `full` preset (ResNet-18 on mels and covers,
# mDeBERTa-v3-base architecture with LoRA r=8) and `small`, bf16 autocast, with and
# without gradient checkpointing, at batch sizes doubling until one does not fit.
# Each line of $OUT/gpu_bench.jsonl is one measurement (samples/s, peak GiB).
# The loader's side (pairs/s per CPU worker) is measured on the CPU by
# tools/bench_loader.py; BENCHMARKS.md compares the two to estimate the data wait.
set -uo pipefail
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
out="${OUT:-.}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)" | tee -a "$out/gpu.txt"
for preset in full small; do
  for checkpointing in "" "--checkpointing"; do
    for batch in 32 64 128 256 512 1024; do
      if ! timeout 120 python3 tools/bench_models.py --one --preset "$preset" --device cuda \
          --batch "$batch" --bf16 $checkpointing >>"$out/gpu_bench.jsonl" 2>>"$out/gpu_bench.err"; then
        echo "{\"preset\": \"$preset\", \"batch\": $batch, \"checkpointing\": \"$checkpointing\", \"fits\": false}" >>"$out/gpu_bench.jsonl"
        break
      fi
    done
  done
done
cat "$out/gpu_bench.jsonl"
