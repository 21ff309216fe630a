#!/bin/bash
# A short lease of one GPU (run from the repository root on the GPU machine): SoundStorm continued and
# the T5 text-to-semantic model trained from scratch, side by side, each schedule fitted to $BUDGET
# seconds (`time_budget_s`, pipelines/training.py StepBudget); then the acoustic speed benchmark; the
# results tarred and split into 15 MB pieces under $OUT. This is what trained the shipped `tiny`'s
# GPU steps (its MODEL_CARD.md has the calls, budgets and figures).
# The next lease: the T5 is already the GPU's, so give SoundStorm the whole GPU (TRAIN_T2S=0), continuing
# from the shipped weights (or a later CPU continuation), e.g. BUDGET=380 TRAIN_T2S=0 SLR=0.0003 SWARM=100 (training
# may run BUDGET + 90 s and the benchmark 100 s: a call has 600).
#
# The FARGAN feature codec's recipe (issue 47): CONFIG=pipelines/configs/fargan.yaml TRAIN_T2S=0 TRAIN_AR=1, with
# .gpu/soundstorm_init the shipped SoundStorm (soundstorm/assets/tiny/soundstorm: same shapes, same semantic
# tokens): SoundStorm continued onto the feature codec's codes (.gpu/data/shards made by that config's stages on
# a CPU first, cut to 4 levels as below), the AR baseline beside it on the same codes. Started from the shipped
# weights it learnt the new codes far faster than from scratch (30 CPU minutes each: CER 0.40 against 0.87,
# docs/history/2026-12-06.md); INIT= (empty) is the from-scratch control. fargan.yaml now learns its semantic
# tokens (`semantic.kind: learnt`): make .gpu/soundstorm_init with `python -m pipelines.stages.soundstorm_init
# --config pipelines/configs/fargan.yaml --from soundstorm/assets/tiny/soundstorm --old-semantic
# soundstorm/assets/tiny/semantic/semantic.safetensors --out .gpu/soundstorm_init` (the shipped weights, their
# semantic embedding carried onto the new tokens: valid loss 5.07 against 5.55 after 30 CPU minutes without it;
# the audio tied at that size, docs/history/2026-12-07.md), and train the T5 too (TRAIN_T2S=1): the shipped one
# writes k-means tokens. The same tool carries the shipped T5 and AR baseline onto the learnt tokens (`--model
# ar_baseline t2s --from soundstorm/assets/tiny/ar_baseline soundstorm/assets/tiny/t2s --out .gpu/ar_init
# .gpu/t2s_init`); T2S_INIT=.gpu/t2s_init AR_INIT=.gpu/ar_init start them there.
#
# T2S_SET passes more overrides to the T5 stage, e.g. a T5 reading phonemes with guided attention and
# absolute positions (the shards then made with experimental.phoneme_t5=true):
#   T2S_SET="--set experimental.t5_guided_attention=1.0 --set experimental.t5_absolute_positions=true"
# It reads .gpu/ (carried to the machine, at most 64 MiB in all; not in git):
#   .gpu/data/shards          data/tiny/shards with the codes cut to the first 4 levels (meta "levels": 4),
#                             which halves them (the tiny SoundStorm models 4 levels):
#                               codes = load_file(shard)["codes"][:4]; meta["levels"] = 4
#   .gpu/data/text_tokenizer  data/tiny/text_tokenizer
#   .gpu/soundstorm_init      the SoundStorm folder to continue from (config.json, model.safetensors);
#                             INIT= (empty) trains from scratch
#   .whl/                     soundfile, cffi, pycparser wheels, if the machine lacks them
export PYTHONUNBUFFERED=1
BUDGET=${BUDGET:-360}
PY=${PY:-python3}
RES=${RES:-/tmp/res}
mkdir -p $RES
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
export PYTHONPATH=.:$PYTHONPATH
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $RES/gpu.txt 2>&1
$PY -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.is_available())" >> $RES/gpu.txt 2>&1
cat $RES/gpu.txt
CFG="--config ${CONFIG:-pipelines/configs/tiny.yaml} --out-dir .gpu/data"
S=soundstorm; T=t2s; A=ar
INIT=${INIT-.gpu/soundstorm_init}
FROM=$([ -n "$INIT" ] && echo "--set $S.init_from=$INIT")
timeout $((BUDGET + 90)) $PY -m pipelines soundstorm $CFG $FROM \
  --set $S.steps=200000 --set $S.time_budget_s=$BUDGET --set $S.frames_per_batch=${FRAMES:-12000} \
  --set $S.lr=${SLR:-0.0005} --set $S.warmup=${SWARM:-200} --set $S.dropout=0.1 --set $S.log_every=50 \
  --set $S.save_every=500 --set $S.threads=4 > $RES/soundstorm.log 2>&1 &
if [ "${TRAIN_T2S:-1}" = 1 ]; then  # TRAIN_T2S=0: SoundStorm alone (the shipped T5 is already the GPU's)
timeout $((BUDGET + 90)) $PY -m pipelines t2s $CFG --set $T.steps=200000 --set $T.time_budget_s=$BUDGET \
  --set $T.batch_size=${T2S_BATCH:-64} --set $T.lr=0.001 --set $T.warmup=300 --set $T.dropout=0.1 \
  --set $T.log_every=100 --set $T.save_every=1000 --set $T.threads=4 $T2S_SET \
  $([ -n "$T2S_INIT" ] && echo "--set $T.init_from=$T2S_INIT") > $RES/t2s.log 2>&1 &
fi
if [ "${TRAIN_AR:-0}" = 1 ]; then  # the AR baseline on the same codes, the same budget
timeout $((BUDGET + 90)) $PY -m pipelines ar $CFG --set $A.steps=200000 --set $A.time_budget_s=$BUDGET \
  --set $A.threads=4 $([ -n "$AR_INIT" ] && echo "--set $A.init_from=$AR_INIT") > $RES/ar.log 2>&1 &
fi
wait
tail -n 3 $RES/soundstorm.log $RES/t2s.log $RES/ar.log 2>/dev/null
cp .gpu/data/stages.json $RES/ 2>/dev/null
$PY - <<'PY'
import torch
from safetensors.torch import load_file, save_file
path = ".gpu/data/t2s/model.safetensors"
try:
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in load_file(path).items()}, path, metadata={"format": "pt"})
except Exception as exc:
    print("t2s bf16:", exc)
PY
timeout ${BENCH_S:-100} $PY benchmarks/acoustic_speed.py --durations ${DURATIONS:-30} --runs ${RUNS:-1} --train-step \
  --json $RES/acoustic_speed.json > $RES/acoustic_speed.log 2>&1
cat $RES/acoustic_speed.log | tail -8
T2S_OUT=$([ -d .gpu/data/t2s ] && echo t2s)
AR_OUT=$([ -f .gpu/data/ar_baseline/model.safetensors ] && echo ar_baseline/model.safetensors ar_baseline/config.json)
tar cf /tmp/results.tar --exclude train_state.pt -C .gpu/data soundstorm/model.safetensors soundstorm/config.json $T2S_OUT $AR_OUT -C $RES . 2>&1 | tail -2
cd ${OUT:-/tmp/outdir} && split -b 15M /tmp/results.tar results.tar. && ls -la
