#!/usr/bin/env bash
# B4 speaker-embedding pipeline in stages, as the original run_embedding_extraction.sh:
#   ./run_embedding_extraction.sh [--stage N] [--stop_stage M] [--VAR value | --VAR=value ...]
#   stage 1: extract (one process per GPU in GPUS through torchrun; NUM_CPU_PROCS CPU processes without GPUs)
#   stage 2: merge the processes' results into FINAL_OUTPUT_DIR (utterance/speaker pickles, lists,
#            summary, .npy, .mat); files that failed in stage 1 are left out and listed
#   stage 3: remove the intermediate per-utterance files in OUTPUT_DIR (the final files stay)
# Configure with the variables below, from the environment, or as --DATA_ROOT /path style options.
# Exit status: 0 when every file was embedded; 1 when some failed (they are listed at the end and in
# OUTPUT_DIR/failures.csv; the others are merged); 2 for a bad option, model or DATA_ROOT.
# Full output of each stage (with any traceback) goes to OUTPUT_DIR/logs/stage<N>.log.
set -euo pipefail

usage() {
    cat <<EOF
usage: $(basename "$0") [--stage N] [--stop_stage M] [--VAR value ...]

Speaker embeddings of DATA_ROOT/dataset/speaker/utterance.wav in three stages:
  1  extract   one process per GPU in GPUS (torchrun), or NUM_CPU_PROCS CPU processes without GPUs
  2  merge     per-utterance and per-speaker files in FINAL_OUTPUT_DIR; failed files are listed
  3  clean up  remove the per-utterance files in OUTPUT_DIR/utterances

Variables (environment, or --NAME value):
  DATA_ROOT          corpus root                        (now: ${DATA_ROOT})
  MODEL              eres2netv2 | eres2netv2_w24s4ep4 | campplus | ge2e   (now: ${MODEL})
  MODEL_PATH         checkpoint file or ModelScope id   (now: ${MODEL_PATH:-the published one})
  OUTPUT_DIR         per-utterance files, summary.json, failures.csv, logs/   (now: ${OUTPUT_DIR})
  FINAL_OUTPUT_DIR   merged files                       (now: ${FINAL_OUTPUT_DIR})
  GPUS               GPU ids, e.g. "0 1 2 3"; empty: CPU (now: ${GPUS:-none, CPU})
                     default: the GPUs nvidia-smi -L lists (CUDA_VISIBLE_DEVICES when set)
  NUM_CPU_PROCS      CPU processes when GPUS is empty   (now: ${NUM_CPU_PROCS})
  BATCH_SIZE         utterances per model call          (now: ${BATCH_SIZE})
  MASTER_PORT        torchrun rendezvous port           (now: ${MASTER_PORT})
  CONFIG_FILE        accepted for compatibility (the architecture comes from MODEL)

Exit status: 0 all files embedded; 1 some files failed (listed at the end); 2 bad option or model.
EOF
}

die() { echo "error: $*" >&2; exit 2; }

# The GPUs this machine shows: CUDA_VISIBLE_DEVICES when set, else the indices nvidia-smi -L lists.
detect_gpus() {
    if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
        [ "$CUDA_VISIBLE_DEVICES" = "-1" ] || echo "${CUDA_VISIBLE_DEVICES//,/ }"
        return 0
    fi
    command -v nvidia-smi >/dev/null 2>&1 || return 0
    nvidia-smi -L 2>/dev/null | sed -n 's/^GPU \([0-9][0-9]*\):.*/\1/p' | tr '\n' ' ' | sed 's/ *$//' || true
}

DATA_ROOT="${DATA_ROOT:-data_root}"                  # data_root/dataset/speaker/utterance.wav
MODEL="${MODEL:-eres2netv2}"                          # eres2netv2 | eres2netv2_w24s4ep4 | campplus | ge2e
MODEL_PATH="${MODEL_PATH:-}"                          # checkpoint file or ModelScope id (empty: the published one)
CONFIG_FILE="${CONFIG_FILE:-}"                        # accepted for compatibility; the architecture comes from MODEL
OUTPUT_DIR="${OUTPUT_DIR:-embeddings_output}"
FINAL_OUTPUT_DIR="${FINAL_OUTPUT_DIR:-final_embeddings}"
GPUS="${GPUS-$(detect_gpus)}"                         # GPU ids; empty: CPU
BATCH_SIZE="${BATCH_SIZE:-32}"
MASTER_PORT="${MASTER_PORT:-29502}"
NUM_CPU_PROCS="${NUM_CPU_PROCS:-1}"                   # processes when GPUS is empty
stage=1
stop_stage=3
VARIABLES=" DATA_ROOT MODEL MODEL_PATH CONFIG_FILE OUTPUT_DIR FINAL_OUTPUT_DIR GPUS BATCH_SIZE MASTER_PORT NUM_CPU_PROCS "

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --*=*) name="${1%%=*}"; value="${1#*=}"; shift ;;
        --*) name="$1"; [ $# -ge 2 ] || die "$1 needs a value (--help for usage)"; value="$2"; shift 2 ;;
        *) die "unknown argument '$1' (--help for usage)" ;;
    esac
    name="${name#--}"
    case "$name" in
        stage) stage="$value" ;;
        stop_stage) stop_stage="$value" ;;
        *) [[ "$VARIABLES" == *" $name "* ]] || die "unknown option --$name (--help for usage)"
           printf -v "$name" '%s' "$value" ;;
    esac
done
[[ "$stage" =~ ^[0-9]+$ ]] || die "--stage must be a number, got '$stage'"
[[ "$stop_stage" =~ ^[0-9]+$ ]] || die "--stop_stage must be a number, got '$stop_stage'"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${AUDIO_EMBEDDINGS_PYTHON:-$here/.venv/bin/python}"
[ -x "$python" ] || die "no Python at $python: run ./.venv-setup.sh, or set AUDIO_EMBEDDINGS_PYTHON"
script="$here/python/B4_model_speaker.py"
checkpoint=()
[ -n "$MODEL_PATH" ] && checkpoint=(--checkpoint "$MODEL_PATH")
[ -n "$CONFIG_FILE" ] && echo "note: CONFIG_FILE is not needed (the architecture comes from MODEL=$MODEL)" >&2
common=(--model "$MODEL" "${checkpoint[@]}" --output-dir "$OUTPUT_DIR" --final-output-dir "$FINAL_OUTPUT_DIR")
logs="$OUTPUT_DIR/logs"

# Run a stage: its full stderr goes to logs/stage<N>.log; the terminal gets its one-line messages
# (every line with --quiet; without, everything but Python tracebacks and torchrun's failure report).
run_stage() {
    local n="$1" keep="$2"
    shift 2
    mkdir -p "$logs"
    local log="$logs/stage$n.log" status=0
    : > "$log"
    set +e
    { "$@" 2>&1 1>&3 3>&- | tee -a "$log" | awk -v keep="$keep" '
        keep == "errors" { if ($0 ~ /^(error|warning|note):/) print; fflush(); next }
        /^Traceback \(most recent call last\):/ { tb = 1; next }
        tb && /^[ \t]/ { next }
        tb { tb = 0; if ($0 !~ /ChildFailedError/) print "error: " $0; fflush(); next }
        /^=+$/ { report = !report; next }
        report { next }
        /torch\/distributed\/|torch\.distributed\.|^\*+$/ { next }
        { print; fflush() }' >&2; } 3>&1
    status=${PIPESTATUS[0]}
    set -e
    return "$status"
}

final_status=0
merge_status=0
ran_extract_or_merge=0
if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
    ran_extract_or_merge=1
    read -r -a gpu_ids <<< "$GPUS"
    if [ "${#gpu_ids[@]}" -gt 0 ]; then
        nproc="${#gpu_ids[@]}"; device=cuda
        export CUDA_VISIBLE_DEVICES="$(IFS=,; echo "${gpu_ids[*]}")"
    else
        nproc="$NUM_CPU_PROCS"; device=cpu
    fi
    [[ "$nproc" =~ ^[1-9][0-9]*$ ]] || die "NUM_CPU_PROCS must be a positive integer, got '$nproc'"
    echo "stage 1: extracting with $nproc process(es) on $device${GPUS:+ (GPUs $GPUS)}" >&2
    mkdir -p "$OUTPUT_DIR"
    started="$OUTPUT_DIR/.stage1.started"
    touch "$started"
    if [ "$nproc" -eq 1 ]; then
        launch=("$python" "$script")
    else
        launch=("$python" -m torch.distributed.run --standalone --nproc_per_node="$nproc"
                --master_port="$MASTER_PORT" "$script")
    fi
    status=0
    run_stage 1 errors "${launch[@]}" "$DATA_ROOT" "${common[@]}" --device "$device" \
        --batch-size "$BATCH_SIZE" --quiet || status=$?
    # A stage that wrote its summary finished (some files may have failed): go on and merge.
    reported=$(find "$OUTPUT_DIR" -maxdepth 1 -name 'summary*.json' -newer "$started" 2>/dev/null | head -n 1)
    rm -f "$started"
    if [ "$status" -ne 0 ] && [ -z "$reported" ]; then
        echo "error: stage 1 failed (exit status $status); full output: $logs/stage1.log" >&2
        exit "$status"
    fi
fi
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
    ran_extract_or_merge=1
    echo "stage 2: merging into $FINAL_OUTPUT_DIR" >&2
    status=0
    run_stage 2 all "$python" "$script" --merge "${common[@]}" || status=$?
    if [ "$status" -gt 1 ]; then
        echo "error: stage 2 failed (exit status $status); full output: $logs/stage2.log" >&2
        exit "$status"
    fi
    merge_status="$status"
fi
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
    echo "stage 3: removing the per-utterance files in $OUTPUT_DIR/utterances" >&2
    rm -rf "$OUTPUT_DIR/utterances" "$OUTPUT_DIR/.scratch"
fi

# Files that failed: listed here (one line each) and in failures.csv; exit status 1.
if [ "$ran_extract_or_merge" -eq 1 ] && [ -s "$OUTPUT_DIR/failures.csv" ]; then
    failed=$("$python" - "$OUTPUT_DIR/failures.csv" <<'PY'
import csv, sys
with open(sys.argv[1], newline="", encoding="utf-8") as fh:
    rows = list(csv.DictReader(fh))
for row in rows:
    reason, path = row.get("reason") or "", row.get("path") or ""
    print(f"  {reason if reason.startswith(path) else f'{path}: {reason}'}")
PY
)
    if [ -n "$failed" ]; then
        count=$(printf '%s\n' "$failed" | wc -l | tr -d ' ')
        echo "error: $count file(s) failed and are not in $FINAL_OUTPUT_DIR (listed in $OUTPUT_DIR/failures.csv):" >&2
        printf '%s\n' "$failed" >&2
        final_status=1
    fi
fi
if [ "$merge_status" -ne 0 ] && [ "$final_status" -eq 0 ]; then
    echo "error: the merge is incomplete (a process did not report); see $OUTPUT_DIR/summary.json and $logs/" >&2
    final_status=1
fi
exit "$final_status"
