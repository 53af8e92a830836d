#!/usr/bin/env bash
# The GPU benchmark (one CUDA machine): CIFAR-10 in full (50k train / 10k test), ResNet-18 (CIFAR stem), AMP,
# the paper's recipe with the schedule scaled to E epochs; one seed. Usage, from the repository root:
#   DATAREDUCE_SHARED_DATA=../shared/data bash bench/gpu_run.sh OUT_DIR [EPOCHS] [BENCH_TIMEOUT_S]
# A smoke run (tiny subset, 1 epoch) goes first and stops the script if the trainer fails on this machine.
set -uo pipefail
out=${1:?usage: gpu_run.sh OUT_DIR [EPOCHS] [BENCH_TIMEOUT_S]}
epochs=${2:-8}
budget=${3:-420}
export DATAREDUCE_TEST_CACHE=${DATAREDUCE_TEST_CACHE:-/tmp/datareduce-data} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
nvidia-smi -L; $py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name(0))"
extra="--device cuda --amp --workers 12"
$py bench/run.py --seeds 0 --train-per-class 20 --test-per-class 10 --epochs 1 --methods full,adonis-eta3 \
    --config configs/cifar10-resnet18.yaml --extra "$extra" --out /tmp/gpu-smoke || { echo "SMOKE FAILED"; exit 1; }
methods=full,adonis-eta3,random-keep,adonis-eta3-load-all,infobatch,adonis-eta3-balance-floor-anneal,ids-gamma,ids-gamma+adonis-eta3
timeout "$budget" $py bench/run.py --seeds 0 --train-per-class 5000 --test-per-class 1000 --epochs "$epochs" \
    --methods "$methods" --config configs/cifar10-resnet18.yaml --extra "$extra" --out "$out"
$py bench/summarize.py "$out"  # also after a timeout: the finished runs
