#!/usr/bin/env bash
# B4 speaker-embedding pipeline in stages, as the original run_embedding_extraction.sh:
#   ./run_embedding_extraction.sh [--stage N] [--stop_stage M] [--VAR value ...]
#   stage 1: extract (torchrun, one process per GPU in GPUS; one CPU process when GPUS is empty)
#   stage 2: merge the ranks into FINAL_OUTPUT_DIR (utterance/speaker pickles, lists, summary, .npy, .mat)
#   stage 3: clean up the intermediate per-utterance files in OUTPUT_DIR (the final files stay)
# Configure with the variables below, from the environment, or as --DATA_ROOT /path style options.
set -euo pipefail

DATA_ROOT="${DATA_ROOT:-data_root}"                  # data_root/dataset/speaker/utterance.wav
MODEL="${MODEL:-eres2netv2}"                          # eres2netv2 | eres2netv2_w24s4ep4 | campplus | ge2e
MODEL_PATH="${MODEL_PATH:-}"                          # checkpoint file or ModelScope id (empty: the published one)
CONFIG_FILE="${CONFIG_FILE:-}"                        # accepted for compatibility; the architecture comes from MODEL
OUTPUT_DIR="${OUTPUT_DIR:-embeddings_output}"
FINAL_OUTPUT_DIR="${FINAL_OUTPUT_DIR:-final_embeddings}"
GPUS="${GPUS-0 1 2 3}"                                # GPU ids; empty: CPU
BATCH_SIZE="${BATCH_SIZE:-32}"
MASTER_PORT="${MASTER_PORT:-29502}"
NUM_CPU_PROCS="${NUM_CPU_PROCS:-1}"                   # processes when GPUS is empty
stage=1
stop_stage=3

while [ $# -gt 0 ]; do
    case "$1" in
        --stage) stage="$2"; shift 2 ;;
        --stop_stage) stop_stage="$2"; shift 2 ;;
        --*) name="${1#--}"; printf -v "$name" '%s' "$2"; shift 2 ;;
        *) echo "error: unknown argument $1" >&2; exit 2 ;;
    esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${AUDIO_EMBEDDINGS_PYTHON:-$here/.venv/bin/python}"
script="$here/python/B4_model_speaker.py"
checkpoint=()
[ -n "$MODEL_PATH" ] && checkpoint=(--checkpoint "$MODEL_PATH")
[ -n "$CONFIG_FILE" ] && echo "note: CONFIG_FILE is not needed (the architecture comes from MODEL=$MODEL)" >&2
common=(--model "$MODEL" "${checkpoint[@]}" --output-dir "$OUTPUT_DIR" --final-output-dir "$FINAL_OUTPUT_DIR")

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
    read -r -a gpu_ids <<< "$GPUS"
    if [ "${#gpu_ids[@]}" -gt 0 ]; then
        nproc="${#gpu_ids[@]}"; device=cuda
        export CUDA_VISIBLE_DEVICES="$(IFS=,; echo "${gpu_ids[*]}")"
    else
        nproc="$NUM_CPU_PROCS"; device=cpu
    fi
    echo "stage 1: extracting with $nproc process(es) on $device" >&2
    "$python" -m torch.distributed.run --standalone --nproc_per_node="$nproc" --master_port="$MASTER_PORT" \
        "$script" "$DATA_ROOT" "${common[@]}" --device "$device" --batch-size "$BATCH_SIZE" --quiet
fi
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
    echo "stage 2: merging into $FINAL_OUTPUT_DIR" >&2
    "$python" "$script" --merge "${common[@]}"
fi
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
    echo "stage 3: removing the per-utterance files in $OUTPUT_DIR/utterances" >&2
    rm -rf "$OUTPUT_DIR/utterances" "$OUTPUT_DIR/.scratch"
fi
