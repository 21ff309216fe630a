#!/usr/bin/env bash
# The FARGAN feature-codec chain rebuilt from nothing on 2 CPU cores (issue 47), every step in order, into
# $SOUNDSTORM_DATA/data/fargan-cpu (default /var/tmp/soundstorm), then a bundle folder to try:
#   bash pipelines/recipes/fargan_cpu.sh              # all steps; run it again to resume where it stopped
#   bash pipelines/recipes/fargan_cpu.sh soundstorm   # up to and including that step
#   .venv/bin/soundstorm say "Hello there." --checkpoint /var/tmp/soundstorm/bundle-fargan-cpu -o hi.wav
# Steps and their minutes on 2 cores of an AMD EPYC (2026-12-07, docs/history/2026-12-07.md): corpus 23,
# semantic 42-70, codec 14-20, shards 2, init 2, soundstorm 25 (SS_BUDGET s), tune 11-13 (TUNE_STEPS 1500),
# t2s and ar 20 each (T2S_BUDGET, AR_BUDGET s), bundle under 1. A step is skipped when what it writes is there;
# the corpus, semantic, codec and shards stages also resume inside themselves. The SoundStorm, T5 and AR baseline start from the
# shipped `tiny` ones, their semantic embeddings carried onto the learnt tokens (pipelines.stages.soundstorm_init).
set -euo pipefail
main() {  # the whole script is read before it runs: editing it does not derail a run under way
cd "$(dirname "$0")/../.."
PY="${PY:-.venv/bin/python}"
export SOUNDSTORM_DATA="${SOUNDSTORM_DATA:-/var/tmp/soundstorm}"
export PYTHONUNBUFFERED=1  # the stages' progress lines reach the log as they happen
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
CFG=(--config pipelines/configs/fargan-cpu.yaml)
D="$SOUNDSTORM_DATA/data/fargan-cpu"
BUNDLE="${BUNDLE:-$SOUNDSTORM_DATA/bundle-fargan-cpu}"
TINY=soundstorm/assets/tiny
LAST="${1:-bundle}"
STEPS=(corpus semantic codec shards init soundstorm tune t2s ar bundle)
case " ${STEPS[*]} " in *" $LAST "*) ;; *) echo "error: no step '$LAST' (steps: ${STEPS[*]})" >&2; exit 2 ;; esac

# run STEP MARKER COMMAND...: COMMAND unless MARKER (what the step writes last) exists; stop after $LAST
run() {
    local step=$1 marker=$2; shift 2
    if [ -e "$marker" ]; then
        echo "$(date -u +%H:%M:%S) $step: done before ($marker)"
    else
        echo "$(date -u +%H:%M:%S) $step"
        "$@"
    fi
    if [ "$step" = "$LAST" ]; then echo "$(date -u +%H:%M:%S) stopped after $step"; exit 0; fi
}

run corpus "$D/corpus/.done" bash -c "$PY -m pipelines corpus ${CFG[*]} && touch $D/corpus/.done"
run semantic "$D/semantic/.done" bash -c "$PY -m pipelines semantic ${CFG[*]} && touch $D/semantic/.done"
run codec "$D/codec/.done" bash -c "$PY -m pipelines codec ${CFG[*]} && touch $D/codec/.done"
# the shipped T5's text tokenizer: the carried T5 reads its pieces
mkdir -p "$D/text_tokenizer" && cp -n "$TINY/text/spm.model" "$D/text_tokenizer/"
run shards "$D/shards/.done" bash -c "$PY -m pipelines shards ${CFG[*]} && touch $D/shards/.done"
run init "$D/init/.done" bash -c "$PY -m pipelines.stages.soundstorm_init ${CFG[*]} \
    --model soundstorm ar_baseline t2s --from $TINY/soundstorm $TINY/ar_baseline $TINY/t2s \
    --old-semantic $TINY/semantic/semantic.safetensors --out $D/init/soundstorm $D/init/ar $D/init/t2s \
    && touch $D/init/.done"
run soundstorm "$D/soundstorm/.done" bash -c "$PY -m pipelines soundstorm ${CFG[*]} \
    --set soundstorm.init_from=$D/init/soundstorm --set soundstorm.time_budget_s=${SS_BUDGET:-1500} \
    && touch $D/soundstorm/.done"
run tune "$D/codec_tuned/.done" bash -c "$PY -m pipelines.stages.feature_tune ${CFG[*]} \
    --items 600 --steps ${TUNE_STEPS:-1500} --true-share 0.5 && touch $D/codec_tuned/.done"
run t2s "$D/t2s/.done" bash -c "$PY -m pipelines t2s ${CFG[*]} --set t2s.init_from=$D/init/t2s \
    --set t2s.time_budget_s=${T2S_BUDGET:-1200} --set t2s.threads=2 && touch $D/t2s/.done"
run ar "$D/ar_baseline/.done" bash -c "$PY -m pipelines ar ${CFG[*]} --set ar.init_from=$D/init/ar \
    --set ar.time_budget_s=${AR_BUDGET:-1200} && touch $D/ar_baseline/.done"
run bundle "$BUNDLE/bundle.yaml" "$PY" -m pipelines.stages.bundle "${CFG[@]}" --folder "$BUNDLE"
}
main "$@"
