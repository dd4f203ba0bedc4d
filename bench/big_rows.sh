#!/usr/bin/env bash
# bench/big_rows.sh: 1 M rows through sluice vs pandas unsandboxed, on SQLite,
# PostgreSQL and MariaDB, in the same run (a superset of
# bench-peers/big_rows.py). Nothing here builds sluice: point it at binaries.
#
#   bash bench/big_rows.sh                                   # target/release/sluice, 3 backends
#   SLUICE_BINS=before=/tmp/sluice-before/sluice,after=target/release/sluice bash bench/big_rows.sh
#   ROUNDS=1 SIZES=150 BACKENDS=sqlite bash bench/big_rows.sh   # smoke test
#
# Env: SLUICE_BINS  label=path,... (default sluice=$REPO/target/release/sluice)
#      BACKENDS     "sqlite postgres mariadb"     ROUNDS  3
#      SIZES        "1000000 10000 150" rows; below 1 M the query gets WHERE id < N
#      PORT         base port (18800); backend i, binary j listen on PORT+10i+j
#      BIGBENCH_DIR /tmp/sluice-bigbench: venv, big.sqlite, policies, one
#                   server data dir per label+backend (its Python env is built
#                   once, on the first start), serve logs, results-*.jsonl
#      PG_URL       postgres://postgres@127.0.0.1:5432/test  (table public.bench_big)
#      MYSQL_URL    mysql://root@127.0.0.1:3306/test         (table test.bench_big)
#
# Set-up (idempotent): a uv venv with numpy, pandas 3.1.1, pyarrow 26.0.1,
# SQLAlchemy, psycopg 3, psycopg2, PyMySQL and mysqlclient (apt-get installs
# libmariadb-dev for it; without it the run goes on, minus that baseline);
# the 1 M-row table in each backend (loaded only when it lacks 1 M rows;
# nothing else in those databases is touched); a policy dir: the repo's
# default.toml and seccomp/ with [limits] raised for 1 M rows.
# Per backend, every binary is started at once (different ports), and
# big_rows.py interleaves, round by round, one request to each server and
# one run of each pandas baseline (read_sql + the same classify + json.dumps;
# per driver "cold" = connect inside the timed part, "warm" = reused
# connection; the ratio uses the fastest). It prints each round, then a
# markdown table and the servers' memory (idle VmRSS, VmHWM per 1 M request,
# RSS 2 s later, vs the Arrow size of the 1 M rows). Then SIGTERM, wait.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
HERE=$REPO/bench
BIG=${BIGBENCH_DIR:-/tmp/sluice-bigbench}
BACKENDS=${BACKENDS:-sqlite postgres mariadb}
ROUNDS=${ROUNDS:-3}
SIZES=${SIZES:-1000000 10000 150}
PORT=${PORT:-18800}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
MYSQL_URL=${MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
SLUICE_BINS=${SLUICE_BINS:-sluice=$REPO/target/release/sluice}
mkdir -p "$BIG"
export UV_CACHE_DIR=$BIG/uv-cache UV_COMPILE_BYTECODE=1
PY=$BIG/venv/bin/python

# ---- binaries: label=path, relative paths from $PWD, else from the repo
labels=() bins=()
IFS=, read -ra specs <<<"$SLUICE_BINS"
for spec in "${specs[@]}"; do
  label=${spec%%=*} path=${spec#*=}
  [ "$label" != "$spec" ] || { echo "SLUICE_BINS entry '$spec' is not label=path" >&2; exit 1; }
  case $path in /*) ;; *) [ -e "$path" ] && path=$PWD/$path || path=$REPO/$path ;; esac
  [ -x "$path" ] || { echo "$label: no executable $path (this script never builds)" >&2; exit 1; }
  labels+=("$label") bins+=("$path")
done

# ---- venv
command -v uv >/dev/null || python3 -m pip install -q uv
[ -x "$PY" ] || uv venv -q --python python3 "$BIG/venv"
if ! "$PY" -c 'import numpy, pandas, pyarrow, sqlalchemy, psycopg, psycopg2, pymysql' 2>/dev/null; then
  uv pip install -q --python "$PY" numpy==2.4.6 pandas==3.1.1 pyarrow==26.0.1 \
    sqlalchemy 'psycopg[binary]' psycopg2-binary pymysql
fi
if ! "$PY" -c 'import MySQLdb' 2>/dev/null; then
  if ! pkg-config --exists libmariadb 2>/dev/null && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libmariadb-dev pkg-config gcc >"$BIG/apt.log" 2>&1 ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libmariadb-dev pkg-config gcc >>"$BIG/apt.log" 2>&1; } || true
  fi
  uv pip install -q --python "$PY" mysqlclient >"$BIG/mysqlclient.log" 2>&1 ||
    echo "NOTE: mysqlclient did not install (see $BIG/mysqlclient.log): MariaDB runs without the mysqldb baseline"
fi

# ---- policy: the repo's default with limits for 1 M rows
POL=$BIG/policies
rm -rf "$POL" && mkdir -p "$POL"
cp "$REPO/policies/default.toml" "$POL/default.toml"
cp -r "$REPO/policies/seccomp" "$POL/seccomp"
sed -i -E \
  -e 's/^max_rows = .*/max_rows = 2000000/' \
  -e 's/^max_output_bytes = .*/max_output_bytes = 104857600/' \
  -e 's/^memory_mb = .*/memory_mb = 2048/' \
  -e 's/^max_fetch_bytes = .*/max_fetch_bytes = 1073741824/' \
  -e 's/^timeout_s = .*/timeout_s = 120/' \
  -e 's/^sql_timeout_s = .*/sql_timeout_s = 120/' "$POL/default.toml"
[ "$(grep -cE '^(max_rows = 2000000|max_output_bytes = 104857600|memory_mb = 2048|max_fetch_bytes = 1073741824|timeout_s = 120|sql_timeout_s = 120)$' "$POL/default.toml")" = 6 ] ||
  { echo "policy edit failed: $POL/default.toml" >&2; exit 1; }

# ---- servers
pids=()
stop_servers() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

# start_server LABEL BIN PORT DATA_DIR DB_URL: appends to pids, sets KEY
start_server() {
  local label=$1 bin=$2 port=$3 data=$4 url=$5 log code pid
  mkdir -p "$data"
  log=$data/serve-$port.log
  "$bin" serve --data-dir "$data" --bind "127.0.0.1:$port" --database "$url" --policies "$POL" >"$log" 2>&1 &
  pid=$!
  pids+=("$pid")
  SERVER_PIDS[$label]=$pid
  SERVER_LOGS[$label]=$log
  SERVER_BINS[$label]=$bin
}
wait_ready() {
  local label=$1 port=$2 pid=${SERVER_PIDS[$1]} log=${SERVER_LOGS[$1]} code=000
  for _ in $(seq 1 600); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$port/readyz" || true)
    [ "$code" = 200 ] && break
    kill -0 "$pid" 2>/dev/null || { echo "$label died on start:" >&2; tail -20 "$log" >&2; exit 1; }
    sleep 1
  done
  [ "$code" = 200 ] || { echo "$label not ready after 600 s:" >&2; tail -20 "$log" >&2; exit 1; }
  # The admin key is printed on the first start of a data dir only: keep it.
  local data key keyfile
  data=$(dirname "$log") keyfile=$(dirname "$log")/bench-key
  key=$(grep -o 'sluice_[0-9a-f]\{32,\}' "$log" | head -1 || true)
  [ -n "$key" ] || key=$(cat "$keyfile" 2>/dev/null || true)
  if [ -z "$key" ]; then
    key=$("${SERVER_BINS[$label]}" keys create --data-dir "$data" --name "bench-$port-$RANDOM" --role execute \
      --policies "$POL" 2>/dev/null | tail -1)
  fi
  [[ $key == sluice_* ]] || { echo "$label: no API key (log $log)" >&2; exit 1; }
  echo "$key" >"$keyfile"
  SERVER_KEYS[$label]=$key
}

STAMP=$(date +%Y%m%d-%H%M%S)
JSONL=$BIG/results-$STAMP.jsonl
echo "results: $JSONL; binaries: ${labels[*]}; backends: $BACKENDS; sizes: $SIZES; rounds: $ROUNDS"
bi=0
for backend in $BACKENDS; do
  case $backend in
    sqlite)   db=$BIG/big.sqlite; url=sqlite://$BIG/big.sqlite; table=t ;;
    postgres) db=$PG_URL; url=$PG_URL; table=public.bench_big ;;
    mariadb)  db=$MYSQL_URL; url=$MYSQL_URL; table=bench_big ;;
    *) echo "unknown backend $backend" >&2; exit 1 ;;
  esac
  "$PY" "$HERE/big_rows.py" load "$backend" "$db" "$table"
  declare -A SERVER_PIDS=() SERVER_LOGS=() SERVER_KEYS=() SERVER_BINS=()
  args=()
  for j in "${!labels[@]}"; do
    start_server "${labels[$j]}" "${bins[$j]}" $((PORT + 10 * bi + j)) "$BIG/data-${labels[$j]}-$backend" "$url"
  done
  for j in "${!labels[@]}"; do
    l=${labels[$j]} p=$((PORT + 10 * bi + j))
    wait_ready "$l" "$p"
    args+=(--server "$l:$p:${SERVER_KEYS[$l]}:${SERVER_PIDS[$l]}")
    grep -iE 'warn|degrad' "${SERVER_LOGS[$l]}" | tail -3 | sed "s/^/[$backend $l log] /" || true
  done
  # shellcheck disable=SC2086
  "$PY" "$HERE/big_rows.py" run "$backend" "$db" "$table" "${args[@]}" \
    --sizes $SIZES --rounds "$ROUNDS" --jsonl "$JSONL"
  stop_servers
  bi=$((bi + 1))
done
echo "raw results: $JSONL"
