"""eth_getLogs ranges a node refuses. Anvil has no limit of its own, so the node's answer is
replaced, at the one call that matters, by the error a capped node (reth) really sends."""

from __future__ import annotations

import pytest
from web3.exceptions import Web3RPCError

from marketplace.payments.chain import ChainError
from marketplace.payments.indexer import RangeRefused, index
from marketplace.payments.models import ChainEvent, ContractDeployment, IndexerCursor
from tests.indexer.helpers import outcome, workload

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


class CappedNode:
    """Refuses eth_getLogs spanning more than `limit` blocks, as reth does ("query exceeds max
    block range 100000", JSON-RPC error -32602); records every range asked for."""

    def __init__(self, w3, monkeypatch, limit: int) -> None:
        self.limit = limit
        self.asked: list[tuple[int, int, bool]] = []
        real = w3.provider.make_request

        def make_request(method, params):
            if method == "eth_getLogs":
                first, last = int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)
                refused = last - first + 1 > self.limit
                self.asked.append((first, last, refused))
                if refused:
                    return {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "error": {
                            "code": -32602,
                            "message": f"query exceeds max block range {self.limit}",
                        },
                    }
            return real(method, params)

        monkeypatch.setattr(w3.provider, "make_request", make_request)

    def answered(self) -> list[tuple[int, int]]:
        return [(first, last) for first, last, refused in self.asked if not refused]


def _reference(live_chain, settings) -> dict:
    from django.db import transaction

    savepoint = transaction.savepoint()
    try:
        index()
        return outcome()
    finally:
        transaction.savepoint_rollback(savepoint)


def test_a_refused_range_is_split_until_the_node_answers_and_nothing_is_missed(
    live_chain, market, alice, listing, settings, monkeypatch
):
    workload(live_chain, market, alice, listing)
    reference = _reference(live_chain, settings)
    settings.CHAIN_INDEXER_MAX_BLOCKS = 64
    node = CappedNode(live_chain, monkeypatch, limit=5)
    index()
    assert any(refused for *_, refused in node.asked)
    answered = node.answered()
    assert all(last - first + 1 <= 5 for first, last in answered)
    # The answered ranges tile the chain: no block skipped, none read twice.
    assert all(b[0] == a[1] + 1 for a, b in zip(answered, answered[1:], strict=False))
    assert answered[-1][1] == live_chain.eth.block_number
    # Fewer calls than one per block: the range grows back after each answer.
    assert len(answered) < live_chain.eth.block_number - answered[0][0]
    assert outcome() == reference


def test_a_node_refusing_even_one_block_stops_the_run_without_moving_the_cursors(
    live_chain, market, alice, listing, monkeypatch
):
    workload(live_chain, market, alice, listing)
    CappedNode(live_chain, monkeypatch, limit=0)
    with pytest.raises(RangeRefused):
        index()
    # Each cursor still stands just before its contract's deployment, where it started.
    deployed = dict(ContractDeployment.objects.values_list("address", "block_number"))
    cursors = IndexerCursor.objects.values_list("address", "last_block")
    assert len(cursors) == 2
    assert all(last == deployed[address] - 1 for address, last in cursors)
    assert not ChainEvent.objects.exists()


@pytest.mark.parametrize(
    "error",
    [
        {"code": -32000, "message": "header not found"},
        # Infura's throttle: same code as its "more than 10000 results", not a size problem.
        {"code": -32005, "message": "project ID request rate exceeded"},
    ],
)
def test_other_node_errors_are_not_taken_for_a_range_too_large(
    live_chain, market, alice, listing, monkeypatch, error
):
    workload(live_chain, market, alice, listing)
    asked = []
    real = live_chain.provider.make_request

    def make_request(method, params):
        if method == "eth_getLogs":
            asked.append(params)
            return {"jsonrpc": "2.0", "id": 1, "error": error}
        return real(method, params)

    monkeypatch.setattr(live_chain.provider, "make_request", make_request)
    with pytest.raises(Web3RPCError, match=error["message"]):
        index()
    assert len(asked) == 1


def test_a_node_answering_with_logs_outside_the_range_is_not_believed(
    live_chain, market, alice, listing, monkeypatch, settings
):
    workload(live_chain, market, alice, listing)
    settings.CHAIN_INDEXER_MAX_BLOCKS = 2
    real = live_chain.provider.make_request

    def make_request(method, params):
        if method == "eth_getLogs":  # every log there is, whatever was asked
            params = [{**params[0], "fromBlock": "0x0", "toBlock": "latest"}]
        return real(method, params)

    monkeypatch.setattr(live_chain.provider, "make_request", make_request)
    with pytest.raises(ChainError, match="answered other blocks"):
        index()
    assert not ChainEvent.objects.exists()
