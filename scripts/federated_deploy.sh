#!/usr/bin/env bash
# Federated transfer in Flower's deployment mode on this machine: one SuperLink and one SuperNode
# per client, each its own process on 127.0.0.1 (free ports), then `flwr run`; every process is
# stopped by its PID on exit (trap), whatever happens. Flower never installs packages: the
# SuperLink runs with --disable-runtime-dependency-installation.
#
#   scripts/federated_deploy.sh runs/src mnist5k,digits8,fontdigits runs/fed-deploy [extra federate args...]
#
# For a real multi-machine deployment see docs/FEDERATED.md (the same commands, one per machine).
set -euo pipefail
SOURCE=${1:?source run directory}; DOMAINS=${2:?comma-separated data sets, one per client}; OUT=${3:?run directory}
shift 3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
export PATH="$VENV/bin:$PATH" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
WORK=$(mktemp -d -t tk-flower-XXXXXX)
free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    # children first (the SuperLink's detached superexec / ServerApp, the SuperNodes' ClientApps)
    for child in $(pgrep -P "$pid" 2>/dev/null || true); do kill "$child" 2>/dev/null || true; done
    kill "$pid" 2>/dev/null || true
  done
  sleep 2
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  echo "stopped PIDs: ${PIDS[*]:-none}; logs in $WORK" >&2
}
trap cleanup EXIT INT TERM

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
  --mode deployment --superlink "127.0.0.1:$LINK_PORT" "$@"
