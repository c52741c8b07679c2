#!/usr/bin/env bash
# The whole test suite, in one command:
#
#   1. `cargo test --workspace` against SQLite (each test opens a fresh
#      temporary SQLite file, because TRIBUTARY_TEST_DATABASE_URL is unset);
#   2. scripts/sdk-tests.sh, against the debug `tributary` binary: the
#      conformance suite (conformance/SPEC.md) with the Rust SDK's worker;
#      then for Python, Go and TypeScript, each SDK's ci.sh and the
#      conformance suite with its worker; then one seed run per SDK split
#      between that SDK's worker and the Rust example's. A missing
#      toolchain is SKIPPED unless TRIBUTARY_REQUIRE_SDKS=1 (CI sets it);
#   3. dashboard/ci.sh: the dashboard's type-check, the check that the
#      committed bundle is what its sources build, and its browser tests
#      (Debian's chromium through playwright-core). Without node/npm or
#      chromium it is SKIPPED unless TRIBUTARY_REQUIRE_DASHBOARD=1 (CI sets it);
#   4. `cargo test -p tributary-e2e -p tributary-workflow -p tributary-bench` against a throwaway Postgres cluster, when
#      the Postgres server binaries (initdb, pg_ctl) are installed. The cluster
#      lives in a fresh temporary directory, listens on a free port of
#      127.0.0.1 only, and is stopped and deleted on exit, even on failure.
#
# Without Postgres the second suite is SKIPPED, which is not an error unless
# TRIBUTARY_REQUIRE_POSTGRES=1 (CI sets it). Arguments are passed to both
# `cargo test` runs, e.g. `scripts/test.sh -- --nocapture`.
#
# Exit status: 0 when every suite that ran passed (and Postgres was not
# required but missing), 1 otherwise.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '%s\n' "$*"; }
header() { printf '\n==> %s\n' "$*"; }

sqlite_status="not run"
sdk_status="not run"
dashboard_status="not run"
postgres_status="not run"
failed=0

# --- Phase 1: every test, against SQLite ------------------------------------

header "cargo test --workspace (SQLite)"
if env -u TRIBUTARY_TEST_DATABASE_URL cargo test --workspace "$@"; then
    sqlite_status="passed"
else
    sqlite_status="FAILED"
    failed=1
fi

# --- Phase 2: the other SDKs, alone and mixed with Rust ------------------------

header "cargo build the server, the Rust example and the conformance suite for the SDK tests"
sdk_start=$SECONDS
if cargo build -p tributary-server --bin tributary -p tributary-examples --bin parallel_processing --bin error_handling \
    -p tributary-conformance --bin tributary-conformance -p tributary-workflow --example conformance_worker; then
    header "scripts/sdk-tests.sh (conformance of every SDK; Python, Go, TypeScript alone and mixed with Rust)"
    if TRIBUTARY_BIN="$PWD/target/debug/tributary" \
        PARALLEL_PROCESSING_BIN="$PWD/target/debug/parallel_processing" bash scripts/sdk-tests.sh; then
        sdk_status="passed"
    else
        sdk_status="FAILED"
        failed=1
    fi
else
    sdk_status="FAILED (cargo build of tributary and parallel_processing)"
    failed=1
fi
sdk_status+=" in $((SECONDS - sdk_start))s"

# --- Phase 3: the dashboard, in a real browser ----------------------------------

header "dashboard/ci.sh (the dashboard's bundle check and browser tests)"
dashboard_start=$SECONDS
dashboard_skip_reason=""
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    dashboard_skip_reason="node/npm not found"
elif [[ ! -x ${CHROMIUM_BIN:-/usr/bin/chromium} ]]; then
    dashboard_skip_reason="no chromium at ${CHROMIUM_BIN:-/usr/bin/chromium} (apt-get install chromium)"
fi
if [[ -n $dashboard_skip_reason ]]; then
    log "$dashboard_skip_reason: the dashboard tests were SKIPPED"
    dashboard_status="SKIPPED ($dashboard_skip_reason)"
    if [[ ${TRIBUTARY_REQUIRE_DASHBOARD:-} == 1 ]]; then
        dashboard_status+=", required by TRIBUTARY_REQUIRE_DASHBOARD=1"
        failed=1
    fi
elif TRIBUTARY_BIN="$PWD/target/debug/tributary" \
    PARALLEL_PROCESSING_BIN="$PWD/target/debug/parallel_processing" bash dashboard/ci.sh; then
    dashboard_status="passed in $((SECONDS - dashboard_start))s"
else
    dashboard_status="FAILED in $((SECONDS - dashboard_start))s"
    failed=1
fi

# --- Phase 4: the end-to-end tests, against Postgres ------------------------

# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh

postgres_skip_reason=""
if ! read -r initdb pg_ctl < <(find_postgres); then
    postgres_skip_reason="Postgres not found"
elif ((EUID == 0)) && ! id -u postgres >/dev/null 2>&1; then
    postgres_skip_reason="Postgres found but there is no 'postgres' OS user to run it as (running as root)"
fi

if [[ -n $postgres_skip_reason ]]; then
    header "cargo test -p tributary-e2e -p tributary-workflow -p tributary-bench (Postgres)"
    log "$postgres_skip_reason: the Postgres suite was SKIPPED (install postgresql to run it)"
    postgres_status="SKIPPED ($postgres_skip_reason)"
    if [[ ${TRIBUTARY_REQUIRE_POSTGRES:-} == 1 ]]; then
        log "TRIBUTARY_REQUIRE_POSTGRES=1: a skipped Postgres suite is a failure"
        postgres_status+=", required by TRIBUTARY_REQUIRE_POSTGRES=1"
        failed=1
    fi
else
    header "start a throwaway Postgres cluster ($("$pg_ctl" --version))"
    pg_server_options="-F"
    if start_postgres; then
        database_url="postgres://postgres@127.0.0.1:$pg_port/postgres"
        log "Postgres is up in $pg_tmp, admin URL $database_url"
        header "cargo test -p tributary-e2e -p tributary-workflow -p tributary-bench (Postgres)"
        if TRIBUTARY_TEST_DATABASE_URL=$database_url cargo test -p tributary-e2e -p tributary-workflow -p tributary-bench "$@"; then
            postgres_status="passed"
        else
            postgres_status="FAILED"
            failed=1
        fi
    else
        postgres_status="FAILED (the Postgres cluster did not start)"
        failed=1
    fi
    stop_postgres
fi

# --- Summary -----------------------------------------------------------------

header "summary"
log "  SQLite suite   (cargo test --workspace):     $sqlite_status"
log "  SDK suites     (scripts/sdk-tests.sh):       $sdk_status"
log "  Dashboard      (dashboard/ci.sh):            $dashboard_status"
log "  Postgres suite (cargo test -p tributary-e2e -p tributary-workflow -p tributary-bench): $postgres_status"
exit "$failed"
