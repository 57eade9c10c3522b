#!/usr/bin/env bash
# Federated transfer in Flower's deployment mode on this machine: one SuperLink and one SuperNode
# per client, each its own process on 127.0.0.1 (free ports), then `flwr run`; every process is
# stopped by its PID on exit (trap), whatever happens. Flower never installs packages: the
# SuperLink runs with --disable-runtime-dependency-installation.
#
#   scripts/federated_deploy.sh [SOURCE [DOMAINS [OUT]]] [extra federate args...]
#
# With no arguments it runs the README's small default: runs/src (made by the README's first
# block) to one client per digit domain (mnist5k,digits8,fontdigits), one round, share=head, in
# runs/fed-deploy. Options (arguments starting with -) go to `transferkit federate`, e.g.
#   scripts/federated_deploy.sh runs/src mnist5k,digits8 runs/fed2 --rounds 5 --share all
# The temporary folder of logs is removed after a successful run and kept (and named) otherwise.
# For a real multi-machine deployment see docs/FEDERATED.md (the same commands, one per machine).
set -euo pipefail
usage() { sed -n '7,13s/^# \{0,1\}//p' "$0"; }
POS=()
while [[ $# -gt 0 && ${#POS[@]} -lt 3 && $1 != -* ]]; do POS+=("$1"); shift; done
if [[ ${1:-} == -h || ${1:-} == --help ]]; then usage; exit 0; fi
SOURCE=${POS[0]:-runs/src}; DOMAINS=${POS[1]:-mnist5k,digits8,fontdigits}; OUT=${POS[2]:-runs/fed-deploy}
EXTRA=("$@")
if [[ ${#POS[@]} -eq 0 && ${#EXTRA[@]} -eq 0 ]]; then EXTRA=(--rounds 1 --share head); fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
export PATH="$VENV/bin:$PATH" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
if [[ ! -e $SOURCE && $SOURCE == */* ]]; then
  echo "federated_deploy.sh: error: $SOURCE: no such source run (make it with: transferkit pretrain --data mnist5k --out $SOURCE)" >&2
  exit 2
fi
WORK=$(mktemp -d -t tk-flower-XXXXXX)
free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
descendants() { local c; for c in $(pgrep -P "$1" 2>/dev/null || true); do descendants "$c"; echo "$c"; done; }
PIDS=()
cleanup() {
  local rc=$? all=() pid
  for pid in "${PIDS[@]}"; do all+=($(descendants "$pid") "$pid"); done  # children first: superexec, ServerApp, ClientApps
  for pid in "${all[@]}"; do kill "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${all[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive -eq 0 ]] && break; sleep 0.2
  done
  for pid in "${all[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  if [[ $rc -eq 0 ]]; then rm -rf "$WORK"; echo "stopped PIDs: ${all[*]:-none}" >&2
  else echo "stopped PIDs: ${all[*]:-none}; logs in $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LINK_PORT=$(free_port)
flower-superlink --insecure --disable-runtime-dependency-installation --host 127.0.0.1 --port "$LINK_PORT" \
  >"$WORK/superlink.log" 2>&1 &
PIDS+=($!)
IFS=, read -r -a CLIENTS <<<"$DOMAINS"
for k in "${!CLIENTS[@]}"; do
  flower-supernode --insecure --superlink "127.0.0.1:$LINK_PORT" --host 127.0.0.1 --port "$(free_port)" \
    --node-config "partition-id=$k num-partitions=${#CLIENTS[@]}" >"$WORK/supernode-$k.log" 2>&1 &
  PIDS+=($!)
done
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$LINK_PORT") 2>/dev/null && break; sleep 0.2; done
# submits the run to the SuperLink started above (flwr run --stream) and writes the run directory
"$VENV/bin/python" -m transferkit federate --source "$SOURCE" --clients-from "$DOMAINS" --out "$OUT" \
  --mode deployment --superlink "127.0.0.1:$LINK_PORT" "${EXTRA[@]}"
