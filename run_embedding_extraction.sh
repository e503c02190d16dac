#!/usr/bin/env bash
# B4 speaker-embedding pipeline in stages, as the original run_embedding_extraction.sh:
#   ./run_embedding_extraction.sh [--stage N] [--stop_stage M] [--VAR value | --VAR=value ...]
#   stage 1: extract (one process per GPU in GPUS through torchrun; NUM_CPU_PROCS CPU processes without GPUs)
#   stage 2: merge the processes' results into FINAL_OUTPUT_DIR (utterance/speaker pickles, lists,
#            summary, .npy, .mat); files that failed in stage 1 are left out and listed
#   stage 3: remove the intermediate per-utterance files in OUTPUT_DIR (the final files stay)
# Configure with the variables below, from the environment, or as --DATA_ROOT /path style options.
# Exit status: 0 when every file was embedded; 1 when some failed (they are listed at the end and in
# OUTPUT_DIR/failures.csv; the others are merged); 2 for a bad option, model, GPUS or DATA_ROOT;
# 130/143 when stopped by SIGINT/SIGTERM.
# Full output of each stage (with any traceback) goes to OUTPUT_DIR/logs/stage<N>.log.
#
# Stopping: SIGINT (Ctrl-C) or SIGTERM, to this script or to its process group, is passed once to
# the running stage's processes (each stage runs in its own process group); they stop cleanly
# (files already computed are written), no later stage runs, nothing is deleted, and the script
# exits 130/143 with one line saying how to resume (rerun the same command: done files are kept).
# A second signal is passed on too (the extraction then drops the files it had not written yet).
# Stage 3 deletes the per-utterance files only after checking that the merged output holds every
# utterance stage 1 finished; a stage that failed or stopped is never followed by a later one.
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

Exit status: 0 all files embedded; 1 some files failed (listed at the end); 2 bad option, model or
GPUS; 130/143 stopped by SIGINT/SIGTERM (rerun the same command to resume).
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

# Signals: the first SIGINT/SIGTERM is remembered and, like any later one, passed to the running
# stage's process group; the script then waits for the stage to end and exits 130/143.
stop_signal=""
stage_pgid=""
current_stage=""
on_signal() {
    [ -n "$stop_signal" ] || stop_signal="$1"
    if [ -n "$stage_pgid" ]; then kill -s "$1" -- "-$stage_pgid" 2>/dev/null || true; fi
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

# After a signal: one line saying where the run stopped and how to resume; exit 128 + signal.
exit_if_stopped() {
    [ -n "$stop_signal" ] || return 0
    local code=130 where="before stage 1"
    [ "$stop_signal" = TERM ] && code=143
    [ -n "$current_stage" ] && where="during stage $current_stage"
    rm -f "$OUTPUT_DIR/.stage1.started"
    if [ "$current_stage" = 3 ]; then
        echo "error: stopped by SIG$stop_signal during stage 3 (clean-up); $FINAL_OUTPUT_DIR is complete;" \
             "rerun with --stage 3 to finish removing $OUTPUT_DIR/utterances" >&2
    else
        echo "error: stopped by SIG$stop_signal $where; rerun the same command to resume" \
             "(done files are kept in $OUTPUT_DIR)" >&2
    fi
    exit "$code"
}

# Run a stage: its full stderr goes to logs/stage<N>.log; the terminal gets its one-line messages
# (every line with --quiet; without, everything but Python tracebacks and torchrun's failure report).
# The stage runs in its own process group (set -m) so that a signal reaches it once, from on_signal,
# and tee/awk ignore signals so that the stage's last lines still reach the log and the terminal.
run_stage() {
    local n="$1" keep="$2"
    shift 2
    mkdir -p "$logs"
    local log="$logs/stage$n.log" status=0
    : > "$log"
    current_stage="$n"
    exit_if_stopped
    set -m
    (
        trap : INT TERM  # wait for the stage's own clean stop, then report its status
        set +e
        { "$@" 2>&1 1>&3 3>&- 4>&- </dev/null | { trap '' INT TERM; tee -a "$log" | awk -v keep="$keep" '
            /^error: interrupted (by SIG(INT|TERM)|before any file)/ { next }
            keep == "errors" { if ($0 ~ /^(error|warning|note):/) print; fflush(); next }
            /^Traceback \(most recent call last\):/ { tb = 1; next }
            tb && /^[ \t]/ { next }
            tb { tb = 0; if ($0 !~ /ChildFailedError|KeyboardInterrupt|SignalException/) print "error: " $0; fflush(); next }
            /^=+$/ { report = !report; next }
            report { next }
            /torch\/distributed\/|torch\.distributed\.|^\*+$/ { next }
            { print; fflush() }'; } >&4 4>&-; } 3>&1
        exit "${PIPESTATUS[0]}"
    ) 4>&2 2>>"$log" &  # the subshell's own messages (bash's job reports) go to the log, not the terminal
    stage_pgid=$!
    set +m
    # wait's stderr to the log as well: bash reports a stage ended by a signal there, and the
    # terminal gets one line from exit_if_stopped or the caller
    wait "$stage_pgid" 2>>"$log" || status=$?
    while kill -0 "$stage_pgid" 2>/dev/null; do  # a trapped signal ended the wait, not the stage
        status=0
        wait "$stage_pgid" 2>>"$log" || status=$?
    done
    stage_pgid=""
    exit_if_stopped
    return "$status"
}

# Checks of what a stage left, in Python (one line on stderr and status 1 when it is not whole):
#   check_outputs extracted OUTPUT_DIR MARKER   stage 1 wrote its (merged) summary after MARKER, and
#                                               it is whole: no process stopped, no shard missing
#   check_outputs merged OUTPUT_DIR FINAL_DIR   the final files hold every utterance whose file is in
#                                               OUTPUT_DIR/utterances, and at least as many as stage 1
#                                               reported done (files_done + files_skipped)
check_outputs() {
    PYTHONPATH="$here/python${PYTHONPATH:+:$PYTHONPATH}" "$python" - "$@" <<'PY'
import json, sys
from pathlib import Path

mode, out = sys.argv[1], Path(sys.argv[2])


def fail(message):
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(1)


def whole_summary(after=None):
    path = out / "summary.json"
    try:
        if after is not None and path.stat().st_mtime_ns < after.stat().st_mtime_ns:
            fail(f"stage 1 wrote no summary ({path} is from an earlier run)")
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"no readable summary of stage 1 ({path}: {exc})")
    if summary.get("status") not in ("complete", "some files failed") or summary.get("shards_missing") \
            or summary.get("shards_stopped"):
        not_done = summary.get("files_not_done")
        fail(f"stage 1 did not finish ({path}: status {summary.get('status')!r}"
             + (f", {not_done} file(s) not done" if not_done else "") + ")")
    return summary


if mode == "extracted":
    whole_summary(after=Path(sys.argv[3]))
    sys.exit(0)

from audio_embeddings.speakers import UTTERANCE_DIR, Utterance  # noqa: E402

final = Path(sys.argv[3])
summary = whole_summary()
try:
    listed = {u["id"] for u in json.loads((final / "utterance_list.json").read_text(encoding="utf-8"))}
    total = json.loads((final / "summary.json").read_text(encoding="utf-8"))["total_utterances"]
except (OSError, ValueError, KeyError, TypeError) as exc:
    fail(f"no readable merged output in {final} ({exc})")
root = out / UTTERANCE_DIR
ids = {Utterance.from_key(p.relative_to(root).with_suffix(".wav").as_posix()).id
       for p in root.rglob("*.npz") if not p.name.startswith(".")} if root.is_dir() else set()
missing = sorted(ids - listed)
expected = int(summary.get("files_done", 0)) + int(summary.get("files_skipped", 0))
if missing or total != len(listed) or len(listed) < expected:
    fail(f"{final} holds {len(listed)} utterances but stage 1 finished {max(expected, len(ids))}"
         + (f" (not merged: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})" if missing else ""))
PY
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
    if [ "$device" = cuda ]; then  # one line, before any process starts, when the GPUs are not there
        cuda_count=$("$python" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)' \
                     2>/dev/null) || cuda_count=""
        exit_if_stopped
        [[ "$cuda_count" =~ ^[0-9]+$ ]] || die "could not import torch with $python (GPUS=\"$GPUS\")"
        [ "$cuda_count" -gt 0 ] || die "GPUS=\"$GPUS\" but torch sees no CUDA GPU here;" \
            "leave GPUS empty (GPUS=) to run on the CPU with NUM_CPU_PROCS processes"
        [ "$cuda_count" -ge "$nproc" ] || die "GPUS=\"$GPUS\" lists $nproc GPUs but torch sees $cuda_count of them;" \
            "list only GPUs this machine has (nvidia-smi -L), or GPUS= for the CPU"
    fi
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
    # Go on only when stage 1 finished: exit status 0, or 1 for failed files, with its whole summary
    # written by this run (no process stopped, no shard missing).
    if [ "$status" -gt 1 ]; then
        rm -f "$started"
        echo "error: stage 1 failed (exit status $status); full output: $logs/stage1.log" >&2
        exit "$status"
    fi
    if ! why=$(check_outputs extracted "$OUTPUT_DIR" "$started" 2>&1 | tail -n 1); then
        rm -f "$started"
        exit_if_stopped
        echo "${why:-error: stage 1 did not finish}; full output: $logs/stage1.log" >&2
        exit 1
    fi
    rm -f "$started"
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
    current_stage=3
    exit_if_stopped
    # Only when the merged output is whole: every finished utterance of stage 1 is in it.
    if why=$(check_outputs merged "$OUTPUT_DIR" "$FINAL_OUTPUT_DIR" 2>&1 | tail -n 1); then
        exit_if_stopped
        echo "stage 3: removing the per-utterance files in $OUTPUT_DIR/utterances" >&2
        rm -rf "$OUTPUT_DIR/utterances" "$OUTPUT_DIR/.scratch"
        exit_if_stopped
    else
        exit_if_stopped
        echo "${why:-error: the merged output could not be checked}; stage 3 (clean-up) not run: the" \
             "per-utterance files stay in $OUTPUT_DIR/utterances" >&2
        final_status=1
    fi
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
