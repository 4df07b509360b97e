#!/usr/bin/env bash
# The `chain` process of `make run`: a local Anvil, then the marketplace contracts deployed on it
# and the demo renter's wallet funded. Anvil stays in the foreground so honcho supervises it.
#
# The chain outlives a restart as the database does: Anvil loads its state from STATE_FILE at
# start, writes it back on exit (Ctrl-C) and every STATE_INTERVAL seconds (so a SIGKILL loses
# at most that much), and deploy_contracts deploys nothing over a restored chain. run.sh names
# the file after the database it belongs to; `make clean-run` deletes both.
set -euo pipefail
cd "$(dirname "$0")/.."
RPC_URL="${CHAIN_RPC_URL:-http://127.0.0.1:8545}"
STATE_FILE="${CHAIN_STATE_FILE:-.run/anvil-state.json}"
# Every dump rewrites the whole file (about 2 KB per block at one block a second): 30 s keeps
# that cheap for a demo left running all day.
STATE_INTERVAL="${CHAIN_STATE_INTERVAL:-30}"
# Anvil's public dev account #2 (the deployer is #0, the demo provider's wallet #1).
RENTER="${DEMO_RENTER_ADDRESS:-0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC}"
RENTER_FUNDS="${DEMO_RENTER_FUNDS:-1000000000}"  # 1,000 test USD (6 decimals)
port=$(.venv/bin/python -c "import sys,urllib.parse as u; print(u.urlparse(sys.argv[1]).port or 8545)" "$RPC_URL")
rpc_up() {
  curl -sf -m 2 -X POST -H 'content-type: application/json' \
    --data '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "$RPC_URL" >/dev/null
}
if rpc_up; then
  # Deploying onto someone else's node would mix this demo's contracts into their chain.
  echo "chain: something already answers at $RPC_URL; stop it or set CHAIN_RPC_URL to a free port" >&2
  exit 1
fi
# The npm wrapper (node_modules/.bin/anvil) exits on SIGTERM without waiting for Anvil, which is
# still writing its state file then: run the binary itself, so that `wait` covers the dump.
anvil=node_modules/.bin/anvil
for binary in node_modules/@foundry-rs/anvil-*/bin/anvil; do
  if [ -x "$binary" ]; then anvil=$binary; fi
done
mkdir -p "$(dirname "$STATE_FILE")"
# The demo agent waits for this file before it onboards (scripts/demo_agent.sh).
rm -f .run/chain-ready
if [ -s "$STATE_FILE" ]; then
  echo "chain: restoring the chain from $STATE_FILE"
fi
# A one-second block time, not automine: blocks keep coming while nothing is sent, so
# CHAIN_CONFIRMATIONS > 1 still confirms, and the indexer sees time pass as a real chain does.
# (The restart tests run it at a quarter of a second: the same chain, four times the pace.)
BLOCK_SECONDS="${CHAIN_BLOCK_SECONDS:-1}"
"$anvil" --host 127.0.0.1 --port "$port" --chain-id 31337 --block-time "$BLOCK_SECONDS" --silent \
  --state "$STATE_FILE" --state-interval "$STATE_INTERVAL" &
anvil_pid=$!
trap 'kill $anvil_pid 2>/dev/null || true; wait $anvil_pid 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 300); do
  rpc_up && break
  if ! kill -0 "$anvil_pid" 2>/dev/null; then
    echo "chain: Anvil exited (port $port taken? or $STATE_FILE unreadable: move it away to" \
      "start a fresh chain, and the platform will report the reset)" >&2
    exit 1
  fi
  sleep 0.1
done
status=0
.venv/bin/python manage.py deploy_contracts || status=$?
if [ "$status" = 3 ]; then
  # The chain is not the one the database's money lives on (deploy_contracts said why and what
  # to do, and opened one admin alert). Keep Anvil up: the platform stands its chain work down.
  echo "chain: NOT the chain this database belongs to; see the message above" >&2
elif [ "$status" != 0 ]; then
  exit "$status"
else
  .venv/bin/python manage.py fund_demo_renter --top-up --address "$RENTER" --amount "$RENTER_FUNDS"
  echo "chain: Anvil ready on $RPC_URL (chain id 31337, state in $STATE_FILE); demo renter" \
    "wallet $RENTER funded"
  touch .run/chain-ready
fi
wait $anvil_pid
