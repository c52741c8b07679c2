#!/usr/bin/env bash
# Every non-Rust SDK against the real server, then one seed run per SDK
# split between two languages:
#
#   1. client-sdk/{python,go,typescript}/ci.sh in turn, each timed: install
#      (from the registries), lint, type-check, test against the server
#      binary, run the seed example;
#   2. the mixed-language runs: for each of those SDKs, a fresh server on a
#      free loopback port over a temporary SQLite file, the Rust example as a
#      worker for the six non-partition tasks, that SDK's example as a worker
#      for process_partition_{1,2,3}, and the Rust example starting the run
#      (--no-worker). A mixed run passes when the run succeeds, its printed
#      per-category stats equal those of an all-Rust run, the run's events put
#      every partition attempt on the SDK worker's executor and every other
#      attempt on the Rust one, and both workers exit 0 on SIGTERM.
#
# Binaries: TRIBUTARY_BIN (else target/release/tributary, else
# target/debug/tributary) and PARALLEL_PROCESSING_BIN (else the
# parallel_processing next to the server binary). Build them with
#   cargo build -p tributary-server --bin tributary -p tributary-examples --bin parallel_processing
#
# A missing toolchain (python3, go, node/npm) SKIPS that SDK's suite and
# mixed run, unless TRIBUTARY_REQUIRE_SDKS=1 (CI sets it): then it fails.
# The mixed runs' checks need python3 whatever the SDK.
# `SDKS="python go"` limits the run to some SDKs; `--mixed-only` skips the
# suites (the SDKs' dependencies must then be installed already, as ci.sh
# leaves them).
#
# Ends with a line `N passed, N failed` (SDK suites and mixed runs); exit
# status 1 when anything failed.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo" || exit 1

log() { printf '%s\n' "$*"; }
header() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'sdk-tests.sh: %s\n' "$*" >&2
    exit 1
}

# --- Binaries ------------------------------------------------------------------

if [[ -z ${TRIBUTARY_BIN:-} ]]; then
    for candidate in "$repo/target/release/tributary" "$repo/target/debug/tributary"; do
        if [[ -x $candidate ]]; then
            TRIBUTARY_BIN=$candidate
            break
        fi
    done
fi
[[ -n ${TRIBUTARY_BIN:-} && -x $TRIBUTARY_BIN ]] ||
    die "no server binary: set TRIBUTARY_BIN or build target/debug/tributary"
TRIBUTARY_BIN="$(cd "$(dirname "$TRIBUTARY_BIN")" && pwd)/$(basename "$TRIBUTARY_BIN")"
export TRIBUTARY_BIN

PARALLEL_PROCESSING_BIN="${PARALLEL_PROCESSING_BIN:-$(dirname "$TRIBUTARY_BIN")/parallel_processing}"
[[ -x $PARALLEL_PROCESSING_BIN ]] ||
    die "no Rust example binary at $PARALLEL_PROCESSING_BIN: set PARALLEL_PROCESSING_BIN or build it (cargo build -p tributary-examples --bin parallel_processing)"

binaries="$(dirname "$TRIBUTARY_BIN")"
CONFORMANCE_BIN="${CONFORMANCE_BIN:-$binaries/tributary-conformance}"
RUST_CONFORMANCE_WORKER="${RUST_CONFORMANCE_WORKER:-$binaries/examples/conformance_worker}"
[[ -x $CONFORMANCE_BIN && -x $RUST_CONFORMANCE_WORKER ]] ||
    die "no conformance runner at $CONFORMANCE_BIN or Rust worker at $RUST_CONFORMANCE_WORKER: build them (cargo build -p tributary-conformance -p tributary-workflow --example conformance_worker)"

log "server binary:       $TRIBUTARY_BIN"
log "Rust example binary: $PARALLEL_PROCESSING_BIN"
log "conformance runner:  $CONFORMANCE_BIN"

run_suites=1
case "${1:-}" in
"") ;;
--mixed-only) run_suites=0 ;;
*) die "unknown argument '$1' (the only one is --mixed-only)" ;;
esac

read -r -a sdks <<<"${SDKS:-python go typescript}"
for sdk in "${sdks[@]}"; do
    [[ $sdk == python || $sdk == go || $sdk == typescript ]] || die "unknown SDK '$sdk' in SDKS (python, go, typescript)"
done

scratch="$(mktemp -d)"
# Every background process this script starts, so that an early exit stops them.
started_pids=()
kill_started() {
    local pid
    for pid in "${started_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${started_pids[@]}"; do
        wait_or_kill "$pid" || true
    done
    started_pids=()
}

# wait_or_kill PID: waits for PID (already sent SIGTERM) and returns its exit
# status; one that is still there after 30 s gets SIGKILL and returns 137, so
# a worker that ignores SIGTERM cannot hang the suite.
wait_or_kill() {
    local pid=$1 status=0
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not exit within 30 s of SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || status=$?
    return "$status"
}
cleanup() {
    kill_started
    rm -rf -- "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
results=()

# record NAME STATUS SECONDS [DETAIL]: one line of the summary.
record() {
    local name=$1 status=$2 seconds=$3 detail=${4:-}
    case $status in
    PASS) passed=$((passed + 1)) ;;
    FAIL) failed=$((failed + 1)) ;;
    esac
    results+=("$(printf '%-8s %-28s %5ss%s' "$status" "$name" "$seconds" "${detail:+  ($detail)}")")
    printf '%s: %s (%ss)%s\n' "$status" "$name" "$seconds" "${detail:+: $detail}"
}

# The toolchain an SDK needs; prints what is missing, if anything.
missing_toolchain() {
    local tool missing=()
    case $1 in
    python) tools=(python3) ;;
    go) tools=(go) ;;
    typescript) tools=(node npm) ;;
    esac
    for tool in "${tools[@]}"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) || printf '%s' "${missing[*]}"
}

# skip_or_fail NAME REASON: a missing toolchain is a skip, or a failure when
# TRIBUTARY_REQUIRE_SDKS=1.
skip_or_fail() {
    if [[ ${TRIBUTARY_REQUIRE_SDKS:-} == 1 ]]; then
        record "$1" FAIL 0 "$2; required by TRIBUTARY_REQUIRE_SDKS=1"
    else
        record "$1" SKIPPED 0 "$2"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The per-category table of the example's report: from its header line to
# the "All" line.
stats_table() {
    sed -n '/^Category  *Products/,/^All  /p' "$1"
}

# The command that starts an SDK's conformance worker (conformance/SPEC.md),
# once its ci.sh has installed and built it.
conformance_worker() {
    case $1 in
    rust) printf 'exec %q' "$RUST_CONFORMANCE_WORKER" ;;
    python) printf 'exec %q %q' "$repo/client-sdk/python/.venv/bin/python" "$repo/client-sdk/python/conformance/worker.py" ;;
    go) printf 'exec %q' "$repo/client-sdk/go/bin/conformance-worker" ;;
    typescript) printf 'exec node %q' "$repo/client-sdk/typescript/dist/conformance/worker.js" ;;
    esac
}

# Runs the conformance suite against one SDK's worker.
conformance() {
    local sdk=$1 start=$SECONDS
    header "conformance: $sdk"
    if "$CONFORMANCE_BIN" --server-bin "$TRIBUTARY_BIN" --worker-cmd "$(conformance_worker "$sdk")"; then
        record "$sdk conformance" PASS "$((SECONDS - start))"
    else
        record "$sdk conformance" FAIL "$((SECONDS - start))" "a conformance scenario failed"
    fi
}

# --- 1. The SDK suites and their conformance ------------------------------------

conformance rust

declare -A toolchain_missing=()
for sdk in "${sdks[@]}"; do
    header "client-sdk/$sdk/ci.sh"
    missing="$(missing_toolchain "$sdk")"
    if [[ -n $missing ]]; then
        toolchain_missing[$sdk]=$missing
        log "$missing not found: the $sdk SDK cannot be tested"
        skip_or_fail "$sdk SDK suite" "$missing not installed"
        continue
    fi
    if ((!run_suites)); then
        log "not run (--mixed-only)"
        continue
    fi
    start=$SECONDS
    if bash "client-sdk/$sdk/ci.sh"; then
        record "$sdk SDK suite" PASS "$((SECONDS - start))"
        conformance "$sdk"
    else
        record "$sdk SDK suite" FAIL "$((SECONDS - start))" "client-sdk/$sdk/ci.sh failed"
    fi
done

# --- 2. The mixed-language runs ------------------------------------------------------

rust_handlers=generate_data,partition_data,combine_results,generate_report,send_notifications,cleanup
sdk_handlers=process_partition_1,process_partition_2,process_partition_3

# Why no mixed run can pass, if something shared is missing.
mixed_blocker=""
header "the all-Rust run, the reference for the mixed runs"
if ! command -v python3 >/dev/null 2>&1; then
    mixed_blocker="python3 not installed (the mixed runs' checks use it)"
    log "$mixed_blocker"
elif ! "$PARALLEL_PROCESSING_BIN" --no-sleep >"$scratch/reference.out" 2>"$scratch/reference.err"; then
    cat "$scratch/reference.out" "$scratch/reference.err"
    mixed_blocker="the all-Rust reference run failed"
else
    stats_table "$scratch/reference.out" >"$scratch/reference.stats"
    if [[ -s $scratch/reference.stats ]]; then
        cat "$scratch/reference.stats"
    else
        cat "$scratch/reference.out"
        mixed_blocker="the all-Rust reference run printed no per-category stats"
    fi
fi

# json_check executors FILE: from `tributary executor list --json`, prints
# "RUST_ID SDK_ID" when there are exactly two executors, one serving the six
# non-partition tasks, the other the three partitions; fails otherwise.
# json_check placement EVENTS RUST_ID SDK_ID SDK: from `tributary run watch
# --json`, prints where each task's attempts ran; fails unless all 9 tasks
# ran, the partitions only on SDK_ID and the others only on RUST_ID.
json_check() {
    python3 - "$@" <<'PY'
import json, sys

mode, path, *rest = sys.argv[1:]
prefix = "parallel_processing."
rust_tasks = {"generate_data", "partition_data", "combine_results", "generate_report", "send_notifications", "cleanup"}
sdk_tasks = {"process_partition_1", "process_partition_2", "process_partition_3"}
if mode == "executors":
    executors = json.load(open(path))
    by_handlers = {frozenset(h.removeprefix(prefix) for h in e["handlers"]): e for e in executors}
    rust, sdk = by_handlers.get(frozenset(rust_tasks)), by_handlers.get(frozenset(sdk_tasks))
    if len(executors) != 2 or rust is None or sdk is None:
        print(f"{len(executors)} executor(s): " + "; ".join(f"{e['name']}: {sorted(e['handlers'])}" for e in executors))
        sys.exit(1)
    print(rust["executor_id"], sdk["executor_id"])
else:
    rust_id, sdk_id, sdk_name = rest
    ran = {}
    for line in open(path):
        event = json.loads(line)
        if event.get("task_id") and event.get("executor_id"):
            ran.setdefault(event["task_id"], set()).add(event["executor_id"])
    ok = set(ran) == rust_tasks | sdk_tasks
    for task in sorted(rust_tasks | sdk_tasks):
        want, who = (sdk_id, sdk_name) if task in sdk_tasks else (rust_id, "Rust")
        seen = ran.get(task, set())
        good = seen == {want}
        ok = ok and good
        print(f"  {task}: expected on the {who} worker, ran on {', '.join(sorted(seen)) or 'nothing'}: {'ok' if good else 'WRONG'}")
    sys.exit(0 if ok else 1)
PY
}

# prepare_sdk_worker SDK: builds what the SDK's worker runs from (ci.sh has
# installed the dependencies) and sets sdk_worker to its command line.
prepare_sdk_worker() {
    case $1 in
    python)
        [[ -x client-sdk/python/.venv/bin/python ]] || {
            log "client-sdk/python/.venv is missing (ci.sh creates it)"
            return 1
        }
        sdk_worker=("$repo/client-sdk/python/.venv/bin/python" "$repo/examples/python/parallel_processing.py")
        ;;
    go)
        (cd examples/go && go build -o "$scratch/go_parallel_processing" ./parallel_processing) || return 1
        sdk_worker=("$scratch/go_parallel_processing")
        ;;
    typescript)
        npm --prefix examples/typescript run --silent build || return 1
        sdk_worker=(node "$repo/examples/typescript/dist/main.js")
        ;;
    esac
}

# start NAME LOG CMD...: starts CMD in the background through exec, so that
# the pid is the program's own and SIGTERM reaches it; sets started_pid.
start() {
    local name=$1 logfile=$2
    shift 2
    (exec "$@") >"$logfile" 2>&1 &
    started_pid=$!
    started_pids+=("$started_pid")
    log "started $name (pid $started_pid)"
}

# stop_expecting_zero PID NAME LOG: SIGTERM, then the exit status must be 0.
stop_expecting_zero() {
    local pid=$1 name=$2 logfile=$3 status=0
    kill -TERM "$pid" 2>/dev/null || true
    wait_or_kill "$pid" || status=$?
    if ((status != 0)); then
        log "$name exited $status on SIGTERM; its output:"
        tail -30 "$logfile"
        return 1
    fi
    log "$name exited 0 on SIGTERM"
}

# mixed_run SDK: one seed run, partitions on SDK's worker, the rest on Rust's.
# Returns non-zero with a reason on stdout's last line when something is off.
mixed_run() {
    local sdk=$1 dir="$scratch/mixed-$1" port url status
    mkdir -p "$dir"
    prepare_sdk_worker "$sdk" || {
        log "FAILED: could not prepare the $sdk worker"
        return 1
    }

    port="$(free_port)"
    url="http://127.0.0.1:$port"
    start "server" "$dir/server.log" "$TRIBUTARY_BIN" serve --listen "127.0.0.1:$port" \
        --database-url "sqlite://$dir/tributary.db" --log-level warn
    local server_pid=$started_pid
    local healthy=0
    for _ in $(seq 300); do
        if "$TRIBUTARY_BIN" health --server "$url" >/dev/null 2>&1; then
            healthy=1
            break
        fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    if ((!healthy)); then
        cat "$dir/server.log"
        log "FAILED: the server on $url did not become healthy"
        return 1
    fi

    start "Rust worker ($rust_handlers)" "$dir/rust-worker.log" \
        "$PARALLEL_PROCESSING_BIN" --server "$url" --worker-only --no-sleep --handlers "$rust_handlers"
    local rust_pid=$started_pid
    start "$sdk worker ($sdk_handlers)" "$dir/sdk-worker.log" \
        "${sdk_worker[@]}" --server "$url" --worker-only --no-sleep --handlers "$sdk_handlers"
    local sdk_pid=$started_pid

    # Both workers registered: two executors, one per handler set.
    local executors="" rust_executor="" sdk_executor=""
    for _ in $(seq 600); do
        "$TRIBUTARY_BIN" executor list --server "$url" --json >"$dir/executors.json" 2>/dev/null || echo "[]" >"$dir/executors.json"
        if executors="$(json_check executors "$dir/executors.json")"; then
            read -r rust_executor sdk_executor <<<"$executors"
            break
        fi
        kill -0 "$rust_pid" 2>/dev/null && kill -0 "$sdk_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z $rust_executor || -z $sdk_executor ]]; then
        log "executors: $(cat "$dir/executors.json")"
        log "--- Rust worker:"
        tail -20 "$dir/rust-worker.log"
        log "--- $sdk worker:"
        tail -20 "$dir/sdk-worker.log"
        log "FAILED: the two workers did not both register, or not with exactly the six and the three handlers: $executors"
        return 1
    fi
    log "Rust executor: $rust_executor; $sdk executor: $sdk_executor"

    # The limit is a safety net against a run nobody serves, far above the
    # second such a run takes.
    status=0
    timeout 300 "$PARALLEL_PROCESSING_BIN" --server "$url" --no-worker --no-sleep >"$dir/run.out" 2>"$dir/run.err" || status=$?
    cat "$dir/run.out"
    if ((status != 0)); then
        cat "$dir/run.err"
        log "--- $sdk worker:"
        tail -30 "$dir/sdk-worker.log"
        log "FAILED: the run did not succeed (parallel_processing --no-worker exited $status)"
        return 1
    fi
    stats_table "$dir/run.out" >"$dir/run.stats"
    if ! diff -u "$scratch/reference.stats" "$dir/run.stats"; then
        log "FAILED: the per-category stats differ from the all-Rust run's"
        return 1
    fi
    log "the per-category stats equal the all-Rust run's"

    # Who ran what: every event naming an executor, per task.
    local run_id
    run_id="$(sed -n 's/^Run \([^ ]*\) of parallel_processing .*: SUCCEEDED$/\1/p' "$dir/run.out")"
    [[ -n $run_id ]] || {
        log "FAILED: no run id in the report"
        return 1
    }
    "$TRIBUTARY_BIN" run watch "$run_id" --server "$url" --json >"$dir/events.jsonl" || {
        log "FAILED: tributary run watch $run_id did not replay a succeeded run"
        return 1
    }
    if ! json_check placement "$dir/events.jsonl" "$rust_executor" "$sdk_executor" "$sdk"; then
        log "FAILED: the attempts did not run where expected (9 tasks, partitions on the $sdk worker, the rest on the Rust one)"
        return 1
    fi
    log "the 3 partitions ran on the $sdk worker, the 6 other tasks on the Rust worker"

    local workers_ok=0
    stop_expecting_zero "$sdk_pid" "the $sdk worker" "$dir/sdk-worker.log" || workers_ok=1
    stop_expecting_zero "$rust_pid" "the Rust worker" "$dir/rust-worker.log" || workers_ok=1
    kill -TERM "$server_pid" 2>/dev/null
    wait_or_kill "$server_pid" || true
    if ((workers_ok != 0)); then
        log "FAILED: a worker did not exit 0 on SIGTERM"
        return 1
    fi
}

for sdk in "${sdks[@]}"; do
    header "mixed-language run: Rust + $sdk (partitions on $sdk)"
    if [[ -n ${toolchain_missing[$sdk]:-} ]]; then
        skip_or_fail "Rust + $sdk mixed run" "${toolchain_missing[$sdk]} not installed"
        continue
    fi
    if [[ $mixed_blocker == python3* ]]; then
        skip_or_fail "Rust + $sdk mixed run" "$mixed_blocker"
        continue
    elif [[ -n $mixed_blocker ]]; then
        record "Rust + $sdk mixed run" FAIL 0 "$mixed_blocker"
        continue
    fi
    start_time=$SECONDS
    output="$scratch/mixed-$sdk.txt"
    # A subshell of its own, so that whatever it started stops with it.
    (
        trap kill_started EXIT
        mixed_run "$sdk"
    ) 2>&1 | tee "$output"
    if ((PIPESTATUS[0] == 0)); then
        record "Rust + $sdk mixed run" PASS "$((SECONDS - start_time))"
    else
        record "Rust + $sdk mixed run" FAIL "$((SECONDS - start_time))" "$(sed -n 's/^FAILED: //p' "$output" | tail -1)"
    fi
done

# --- Summary ------------------------------------------------------------------------

header "SDK summary"
for line in "${results[@]}"; do
    log "  $line"
done
log "$passed passed, $failed failed"
((failed == 0))
