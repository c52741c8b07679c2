# A throwaway Postgres cluster for scripts/test.sh and scripts/bench.sh:
# find the server binaries, create a cluster in a fresh temporary directory,
# start it on a free port of 127.0.0.1, and stop and delete it on exit, even
# on failure. Source it; it expects `log` to be defined and sets an EXIT trap.
#
#   read -r initdb pg_ctl < <(find_postgres)   # or skip when it fails
#   start_postgres                             # sets pg_port
#   stop_postgres

# Prints "INITDB PG_CTL" (two absolute paths) for the first working pair:
# the ones on PATH, then /usr/lib/postgresql/<version>/bin, newest first.
# A pair works when both answer --version and the `postgres` server binary
# sits next to the real initdb (initdb needs it).
find_postgres() {
    local candidates=() dir initdb pg_ctl
    if initdb=$(command -v initdb) && pg_ctl=$(command -v pg_ctl); then
        candidates+=("$initdb" "$pg_ctl")
    fi
    while IFS= read -r dir; do
        [[ -n $dir ]] && candidates+=("$dir/initdb" "$dir/pg_ctl")
    done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -r -V)
    local i
    for ((i = 0; i < ${#candidates[@]}; i += 2)); do
        initdb=${candidates[i]}
        pg_ctl=${candidates[i + 1]}
        [[ -x $initdb && -x $pg_ctl ]] || continue
        "$initdb" --version >/dev/null 2>&1 || continue
        "$pg_ctl" --version >/dev/null 2>&1 || continue
        [[ -x "$(dirname "$(readlink -f "$initdb")")/postgres" ]] || continue
        printf '%s %s\n' "$initdb" "$pg_ctl"
        return 0
    done
    return 1
}

# Runs a command as the OS user that owns the cluster: `postgres` when this
# script runs as root (the server refuses to run as root), else ourselves.
# The working directory is the cluster's directory, which that user can read.
as_pg() {
    if ((EUID == 0)); then
        if command -v runuser >/dev/null 2>&1; then
            (cd "$pg_tmp" && runuser -u postgres -- "$@")
        else
            local quoted
            quoted=$(printf '%q ' "$@")
            (cd "$pg_tmp" && su postgres -s /bin/bash -c "$quoted")
        fi
    else
        (cd "$pg_tmp" && "$@")
    fi
}

# Prints a free TCP port on 127.0.0.1 (the OS picks it; a race with another
# process is possible, so the caller retries on failure).
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' && return 0
    fi
    local port attempt
    for attempt in {1..50}; do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    return 1
}

# True once the server accepts TCP connections on 127.0.0.1:$1.
accepts_connections() {
    local pg_isready
    pg_isready="$(dirname "$(readlink -f "$initdb")")/pg_isready"
    if [[ -x $pg_isready ]]; then
        "$pg_isready" -q -h 127.0.0.1 -p "$1" -U postgres -d postgres
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

pg_tmp=""

# Stops the cluster if a server is (or may be) running, then deletes it all.
stop_postgres() {
    if [[ -n $pg_tmp && -f $pg_tmp/data/postmaster.pid ]]; then
        as_pg "$pg_ctl" -D "$pg_tmp/data" -m fast -t 30 stop >/dev/null 2>&1 ||
            as_pg "$pg_ctl" -D "$pg_tmp/data" -m immediate -t 30 stop >/dev/null 2>&1 ||
            log "warning: could not stop the Postgres cluster in $pg_tmp"
    fi
    if [[ -n $pg_tmp ]]; then
        rm -rf -- "$pg_tmp" || log "warning: could not delete $pg_tmp"
        pg_tmp=""
    fi
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
on_exit() {
    local status=$?
    trap - EXIT
    stop_postgres
    exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Extra options of the Postgres server; the caller may set them before
# start_postgres (the tests use -F: no fsync, as they assert nothing about
# durability across power loss).
pg_server_options=${pg_server_options:-}

# Creates and starts the cluster; sets pg_port. Returns non-zero (after
# printing the reason and the server log) when it cannot.
start_postgres() {
    if ((EUID == 0)); then
        # Under /tmp rather than $TMPDIR: the postgres user must reach it.
        pg_tmp=$(mktemp -d /tmp/tributary-pg.XXXXXX)
        chown postgres: "$pg_tmp"
    else
        pg_tmp=$(mktemp -d "${TMPDIR:-/tmp}/tributary-pg.XXXXXX")
    fi
    chmod 700 "$pg_tmp"

    # UTF8 with the C locale: independent of the machine's locales, and the
    # tests store non-ASCII text (the default for the C locale is SQL_ASCII).
    if ! as_pg "$initdb" -D "$pg_tmp/data" -A trust -U postgres -E UTF8 --locale=C \
        >"$pg_tmp/initdb.log" 2>&1; then
        log "initdb failed:"
        cat "$pg_tmp/initdb.log"
        return 1
    fi

    local attempt started=0
    for attempt in 1 2 3 4 5; do
        pg_port=$(free_port) || {
            log "no free TCP port found"
            return 1
        }
        if as_pg "$pg_ctl" -D "$pg_tmp/data" -l "$pg_tmp/server.log" -w -t 60 \
            -o "$pg_server_options -k $pg_tmp -p $pg_port -c listen_addresses=127.0.0.1" start >/dev/null; then
            started=1
            break
        fi
        log "Postgres did not start on port $pg_port (attempt $attempt of 5)"
    done
    if ((!started)); then
        log "Postgres could not be started; its log:"
        cat "$pg_tmp/server.log" 2>/dev/null || true
        return 1
    fi

    # pg_ctl -w waited on the Unix socket; make sure TCP answers too.
    local _
    for _ in {1..60}; do
        accepts_connections "$pg_port" && return 0
        sleep 0.5
    done
    log "Postgres started but does not accept connections on 127.0.0.1:$pg_port; its log:"
    cat "$pg_tmp/server.log" 2>/dev/null || true
    return 1
}

