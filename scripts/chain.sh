#!/usr/bin/env bash
# The `chain` process of `make run`: a local Anvil, then the marketplace contracts deployed on it
# and the demo renter's wallet funded. Anvil stays in the foreground so honcho supervises it.
set -euo pipefail
cd "$(dirname "$0")/.."
RPC_URL="${CHAIN_RPC_URL:-http://127.0.0.1:8545}"
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
# A one-second block time, not automine: blocks keep coming while nothing is sent, so
# CHAIN_CONFIRMATIONS > 1 still confirms, and the indexer sees time pass as a real chain does.
node_modules/.bin/anvil --host 127.0.0.1 --port "$port" --chain-id 31337 --block-time 1 --silent &
anvil_pid=$!
trap 'kill $anvil_pid 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 100); do
  rpc_up && break
  kill -0 "$anvil_pid" 2>/dev/null || { echo "chain: Anvil exited (port $port taken?)" >&2; exit 1; }
  sleep 0.1
done
.venv/bin/python manage.py deploy_contracts
.venv/bin/python manage.py fund_demo_renter --address "$RENTER" --amount "$RENTER_FUNDS"
echo "chain: Anvil ready on $RPC_URL (chain id 31337); demo renter wallet $RENTER funded"
wait $anvil_pid
