"""Writes of the payments app, one module per kind of money movement. Chain calls happen outside
database transactions (see marketplace/payments/chain.py); reads are in payments/selectors.py.

- deployment: deploying the contracts; forgetting a reset local chain
- faucet: test tokens and gas money for a wallet (local chains only, the demo and the tests)
- leases: `start` and the settlement of a lease (settle, fail, full refund)
- slashing: what a failed verdict sets in motion, the slash and the settlements
- rewarding: each period's rewards for service
- chain_events: the effects of final chain events, applied by the indexer
- stakes: stake rows replayed from staking events
- transactions: waiting for our transactions, and the beat that confirms them
- enqueue: sending the app's Celery tasks

Callers import the module that holds a name; nothing is re-exported here.
"""
