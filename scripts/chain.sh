#!/usr/bin/env bash
# The `chain` process of `make run`: a local Anvil, then the marketplace contracts deployed on it
# and the demo renter funded. Anvil stays in the foreground so honcho supervises it.
set -euo pipefail
cd "$(dirname "$0")/.."
RPC_URL="${CHAIN_RPC_URL:-http://127.0.0.1:8545}"
port=$(.venv/bin/python -c "import sys,urllib.parse as u; print(u.urlparse(sys.argv[1]).port or 8545)" "$RPC_URL")
# A one-second block time, not automine: blocks keep coming while nothing is sent, so
# CHAIN_CONFIRMATIONS > 1 still confirms, and the indexer sees time pass as a real chain does.
node_modules/.bin/anvil --host 127.0.0.1 --port "$port" --chain-id 31337 --block-time 1 --silent &
anvil_pid=$!
trap 'kill $anvil_pid 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 100); do
  curl -sf -X POST -H 'content-type: application/json' \
    --data '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "$RPC_URL" >/dev/null && break
  sleep 0.1
done
if .venv/bin/python manage.py help deploy_contracts >/dev/null 2>&1; then
  .venv/bin/python manage.py deploy_contracts
  .venv/bin/python manage.py fund_demo_renter
fi
echo "chain: Anvil ready on $RPC_URL (chain id 31337)"
wait $anvil_pid
