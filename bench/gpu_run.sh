#!/usr/bin/env bash
# The GPU benchmark (one CUDA machine, ≤ 10 minutes): the long protocol's headline comparison at real scale —
# CIFAR-10 in full (50k train / 10k test), resnet18_cifar, AMP, the long protocol's recipe (cosine SGD) over
# EPOCHS epochs, one seed: full, the frontier at c = 0.5, faithful ADONIS η=3, InfoBatch and RS2 at ADONIS's
# budget, one after another (quiet), then the same summary as the CPU benchmark. Usage, from the repository root:
#   DATAREDUCE_SHARED_DATA=../shared/data bash bench/gpu_run.sh OUT_DIR [EPOCHS] [BENCH_TIMEOUT_S]
# A smoke run (tiny subset, 1 epoch) goes first and stops the script if the trainer fails on this machine.
# Rehearsal on a CPU: DEVICE=cpu TRAIN_PER_CLASS=20 TEST_PER_CLASS=10 bash bench/gpu_run.sh /tmp/gpu-rehearsal 2
set -uo pipefail
out=${1:?usage: gpu_run.sh OUT_DIR [EPOCHS] [BENCH_TIMEOUT_S]}
epochs=${2:-16}
budget=${3:-420}
device=${DEVICE:-cuda}
export DATAREDUCE_TEST_CACHE=${DATAREDUCE_TEST_CACHE:-/tmp/datareduce-data} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
if [ "$device" = cuda ]; then
  nvidia-smi -L
  extra="--model resnet18_cifar --device cuda --amp --workers 12"
else
  extra="--model resnet18_cifar --device cpu --workers 0 --batch-size 32"
fi
$py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
$py bench/run.py --protocol long --seeds 0 --train-per-class 4 --test-per-class 2 --epochs 1 --methods full,adonis-eta3 \
    --extra "$extra" --out "$out-smoke" || { echo "SMOKE FAILED"; exit 1; }
methods=full,full-c0.5,adonis-eta3,infobatch,rs2@adonis-eta3
timeout "$budget" $py bench/run.py --protocol long --seeds 0 --train-per-class "${TRAIN_PER_CLASS:-5000}" \
    --test-per-class "${TEST_PER_CLASS:-1000}" --epochs "$epochs" --methods "$methods" --extra "$extra" --out "$out"
$py bench/summarize.py "$out"  # also after a timeout: the finished runs
