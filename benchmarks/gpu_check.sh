#!/usr/bin/env bash
# The learner's GPU checks (tests/test_gpu.py, marker "gpu"): bf16 step with fp32 logits, CUDA logprobs against the
# float32 CPU computation, a two-process learner group on one device. Needs PyTorch with CUDA, transformers, peft,
# pydantic, pyyaml (no vLLM, no Ray). Usage: bash benchmarks/gpu_check.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
exec "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider "$@"
