#!/usr/bin/env bash
# Issue 2's GPU checks in one call on a GPU machine (a few minutes on an H100):
#   1. tests/informer/test_cuda.py: a training subprocess on CUDA writes its run directory,
#      CUDA outputs and gradients equal the CPU ones, bf16 and fp16 (gradient scaler)
#      mixed precision train to finite scores;
#   2. training throughput and peak GPU memory, small and paper configs, fp32 and AMP;
#   3. ETTh1 M 96->24 test MSE after one epoch of the paper config, fp32 and AMP (the
#      reference reaches 0.521 on CPU).
# Before the call, on a machine with pip access: bash benchmarks/device/fetch_wheels.sh
# Then, with the device tool: run `bash benchmarks/device/check.sh`, carrying .whl.
# Results go to $OUT (the device tool brings them back), else /tmp/device-check.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/device-check}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || { echo "wheels missing: run benchmarks/device/fetch_wheels.sh"; exit 1; }
export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" \
  | tee "$out/device.txt" || exit 1
python3 -m pytest -q -rs -p no:cacheprovider tests/informer/test_cuda.py 2>&1 \
  | tee "$out/cuda_tests.log"
for amp in "" "--amp"; do
  echo "## cuda ${amp:-fp32}" | tee -a "$out/throughput.md"
  python3 benchmarks/train_throughput.py --devices cuda --configs small,paper --steps 200 \
    --warmup 10 $amp 2>&1 | tee -a "$out/throughput.md"
done
cd benchmarks
for amp in False True; do
  config="$out/paper_amp_$amp.py"
  python3 - "$config" "$amp" <<'PY'
import sys
from train_throughput import named_config
values = named_config("paper").to_dict()
values["training"].update(device="cuda", amp=sys.argv[2] == "True", max_epochs=1)
open(sys.argv[1], "w").write(f"CONFIG = {values!r}\n")
PY
  echo "## paper, 1 epoch, amp $amp" | tee -a "$out/accuracy.md"
  python3 accuracy.py --config-file "$config" --seeds 2021 2>&1 | tee -a "$out/accuracy.md"
done
