"""marketplace/payments/chain.py against the in-process chain: keys, nonces, recording, receipts,
errors."""

from __future__ import annotations

import contextlib
import threading

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from eth_account import Account
from eth_utils import keccak
from hexbytes import HexBytes

from marketplace.payments import chain
from marketplace.payments.models import ChainTransaction, ContractDeployment, NonceCursor
from tests.payments.helpers import ALICE, USDC, token_balance

pytestmark = pytest.mark.django_db


def _mint(token, amount: int, key: str):
    return chain.send_call(
        token.functions.mint(ALICE, amount), idempotency_key=key, purpose="mint", role="deployer"
    )


def test_dev_keys_are_refused_off_a_local_chain(monkeypatch, settings):
    monkeypatch.setattr(chain, "chain_id", lambda w3=None: 1)
    settings.CHAIN_OPERATOR_PRIVATE_KEY = ""
    with pytest.raises(ImproperlyConfigured, match="CHAIN_OPERATOR_PRIVATE_KEY"):
        chain.account("operator")
    settings.CHAIN_TREASURY_ADDRESS = ""
    with pytest.raises(ImproperlyConfigured, match="CHAIN_TREASURY_ADDRESS"):
        chain.treasury_address()
    key = "0x" + "ab" * 32
    settings.CHAIN_OPERATOR_PRIVATE_KEY = key
    assert chain.account("operator").address == Account.from_key(key).address


def test_dev_keys_are_used_on_a_local_chain(chain_w3, settings):
    settings.CHAIN_OPERATOR_PRIVATE_KEY = ""
    assert chain.account("operator").key == HexBytes(chain.DEV_KEYS["operator"])


def test_a_transaction_is_recorded_before_it_is_broadcast(deployed, chain_w3, monkeypatch):
    seen = []
    real_send = chain_w3.eth.send_raw_transaction

    def spy(raw):
        # Read through a fresh query: the row must exist, pending, with this exact hash.
        row = ChainTransaction.objects.get(idempotency_key="mint:1")
        seen.append((row.status, row.tx_hash, row.raw_tx))
        assert row.tx_hash == HexBytes(keccak(HexBytes(raw))).to_0x_hex()
        return real_send(raw)

    monkeypatch.setattr(chain_w3.eth, "send_raw_transaction", spy)
    tx = _mint(deployed["token"], 5, "mint:1")
    assert seen == [("pending", tx.tx_hash, tx.raw_tx)]


def test_crash_after_broadcast_then_rerun_moves_tokens_once(deployed, chain_w3, monkeypatch):
    token = deployed["token"]
    before = token_balance(token, ALICE)

    def die_after_broadcast(row, **kwargs):
        raise SystemExit("worker killed after broadcast")

    monkeypatch.setattr(chain, "confirm", die_after_broadcast)
    with pytest.raises(SystemExit):
        chain.confirm(_mint(token, 7 * USDC, "mint:crash"))
    monkeypatch.undo()

    again = chain.confirm(_mint(token, 7 * USDC, "mint:crash"))
    assert again.status == "confirmed"
    assert ChainTransaction.objects.filter(idempotency_key="mint:crash").count() == 1
    assert token_balance(token, ALICE) == before + 7 * USDC


def test_resend_rebroadcasts_the_same_bytes(deployed, chain_w3, monkeypatch):
    sent = []
    real_send = chain_w3.eth.send_raw_transaction
    monkeypatch.setattr(
        chain_w3.eth, "send_raw_transaction", lambda raw: sent.append(raw) or real_send(raw)
    )
    first = _mint(deployed["token"], 1, "mint:resend")
    ChainTransaction.objects.filter(pk=first.pk).update(status="pending")  # as if unconfirmed
    second = _mint(deployed["token"], 1, "mint:resend")
    assert second.tx_hash == first.tx_hash
    assert [HexBytes(r) for r in sent] == [HexBytes(first.raw_tx)] * 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_never_share_a_nonce(deployed, chain_w3):
    token = deployed["token"]
    errors = []

    def worker(n: int) -> None:
        try:
            for i in range(5):
                # eth-tester refuses a nonce ahead of the chain (a real node queues it); the
                # row is recorded and the confirm sweep below rebroadcasts it.
                with contextlib.suppress(chain.TransientChainError):
                    _mint(token, 1, f"mint:thread{n}:{i}")
        except Exception as exc:  # surfaced below; a thread cannot fail the test itself
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    from marketplace.payments.services.transactions import transactions_confirm_pending

    for _ in range(20):
        transactions_confirm_pending()
    deployer = chain.account("deployer").address
    nonces = sorted(
        ChainTransaction.objects.filter(purpose="mint", sender=deployer).values_list(
            "nonce", flat=True
        )
    )
    assert len(nonces) == 20 and len(set(nonces)) == 20
    assert nonces == list(range(nonces[0], nonces[0] + 20))
    assert chain_w3.eth.get_transaction_count(deployer) == nonces[-1] + 1
    assert token_balance(token, ALICE) == 20


def test_nonce_resyncs_when_the_node_is_ahead(deployed, chain_w3):
    operator = chain.account("operator")
    # Something outside this client used the key.
    raw = operator.sign_transaction(
        {
            "to": ALICE,
            "value": 1,
            "gas": 21_000,
            "gasPrice": chain_w3.eth.gas_price,
            "nonce": chain_w3.eth.get_transaction_count(operator.address),
            "chainId": chain_w3.eth.chain_id,
        }
    )
    chain_w3.eth.send_raw_transaction(raw.raw_transaction)
    node_next = chain_w3.eth.get_transaction_count(operator.address)
    tx = chain.send(idempotency_key="ping", purpose="ping", to=ALICE, data=b"", role="operator")
    assert tx.nonce == node_next
    assert NonceCursor.objects.get(address=operator.address).next_nonce == node_next + 1


def test_a_stolen_nonce_retires_the_recorded_transaction(deployed, chain_w3):
    operator = chain.account("operator")
    cursor = NonceCursor.objects.get_or_create(
        chain_id=chain_w3.eth.chain_id, address=operator.address
    )[0]
    # Our row believes in an older nonce than the node; the node refuses the signed tx.
    tx = chain.send(idempotency_key="ping:1", purpose="ping", to=ALICE, data=b"")
    ChainTransaction.objects.filter(pk=tx.pk).update(status="pending")
    tx.refresh_from_db()
    with pytest.raises(chain.NonceTooLow):
        # Same nonce, different bytes: what another signer with our key would do.
        stolen = ChainTransaction.objects.create(
            chain_id=tx.chain_id,
            sender=tx.sender,
            nonce=tx.nonce + 1000,
            purpose="ping",
            idempotency_key="ping:2",
            raw_tx=operator.sign_transaction(
                {
                    "to": ALICE,
                    "value": 2,
                    "gas": 21_000,
                    "gasPrice": chain_w3.eth.gas_price,
                    "nonce": tx.nonce,
                    "chainId": tx.chain_id,
                }
            ).raw_transaction.to_0x_hex(),
            tx_hash="0x" + "99" * 32,
        )
        chain.broadcast(stolen)
    stolen.refresh_from_db()
    assert stolen.status == "failed" and "already used" in stolen.error
    cursor.refresh_from_db()
    assert cursor.next_nonce >= chain_w3.eth.get_transaction_count(operator.address)


def test_a_receipt_needs_the_configured_confirmations(deployed, chain_w3, settings):
    settings.CHAIN_CONFIRMATIONS = 3
    tx = _mint(deployed["token"], 1, "mint:conf")
    with pytest.raises(chain.NotConfirmed):
        chain.confirm(tx)
    assert tx.status == "mined" and tx.block_number is not None
    chain_w3.provider.ethereum_tester.mine_blocks(2)
    assert chain.confirm(tx).status == "confirmed"


def test_a_receipt_without_a_block_is_not_confirmed(deployed, chain_w3, monkeypatch):
    tx = _mint(deployed["token"], 1, "mint:noblock")
    monkeypatch.setattr(
        chain_w3.eth,
        "get_transaction_receipt",
        lambda h: {"blockNumber": None, "status": 1, "blockHash": None, "gasUsed": 0},
    )
    with pytest.raises(chain.NotConfirmed):
        chain.confirm(tx)
    assert tx.status == "pending"


def test_a_reverted_transaction_fails_and_steps_aside(deployed, chain_w3):
    operator = chain.account("operator")
    escrow = deployed["escrow"]
    data = escrow.encode_abi("start", [b"\x01" * 32])  # no such lease: reverts when mined
    nonce = chain_w3.eth.get_transaction_count(operator.address)
    signed = operator.sign_transaction(
        {
            "to": escrow.address,
            "data": data,
            "gas": 100_000,
            "gasPrice": chain_w3.eth.gas_price,
            "nonce": nonce,
            "chainId": chain_w3.eth.chain_id,
        }
    )
    row = ChainTransaction.objects.create(
        chain_id=chain_w3.eth.chain_id,
        sender=operator.address,
        nonce=nonce,
        purpose="start",
        idempotency_key="start:x",
        raw_tx=signed.raw_transaction.to_0x_hex(),
        tx_hash=signed.hash.to_0x_hex(),
    )
    chain.broadcast(row)
    with pytest.raises(chain.TransactionReverted):
        chain.confirm(row)
    row.refresh_from_db()
    assert row.status == "failed" and row.gas_used
    # A failed transaction no longer holds its key: a later attempt may build a new one,
    # and estimation refuses to send what would revert again.
    with pytest.raises(chain.TransactionReverted):
        chain.send_call(
            escrow.functions.start(b"\x01" * 32), idempotency_key="start:x", purpose="start"
        )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("nonce too low", chain.NonceTooLow),  # Anvil / geth
        (
            "the tx doesn't have the correct nonce. account has nonce of: 5 tx has nonce of: 3",
            chain.NonceTooLow,
        ),  # Ganache
        ("Invalid transaction nonce: Expected 3, but got 2", chain.NonceTooLow),  # eth-tester
        ("replacement transaction underpriced", chain.ReplacementUnderpriced),
        ("insufficient funds for gas * price + value", chain.InsufficientFunds),
        (
            "sender doesn't have enough funds to send tx. The upfront cost is: 1",
            chain.InsufficientFunds,
        ),
        (
            "Sender b'..' cannot afford txn gas 21000 with account balance 0",
            chain.InsufficientFunds,
        ),
        ("execution reverted", None),
    ],
)
def test_node_errors_map_to_typed_exceptions(message, expected):
    for exc in (ValueError({"code": -32000, "message": message}), RuntimeError(message)):
        mapped = chain.map_node_error(exc)
        assert (type(mapped) if mapped else None) is expected


def test_real_eth_tester_errors_are_typed(deployed, chain_w3):
    broke = Account.create()
    tx = {
        "to": ALICE,
        "value": 1,
        "gas": 21_000,
        "gasPrice": chain_w3.eth.gas_price,
        "nonce": 0,
        "chainId": chain_w3.eth.chain_id,
    }
    with pytest.raises(Exception) as excinfo:
        chain_w3.eth.send_raw_transaction(broke.sign_transaction(tx).raw_transaction)
    assert isinstance(chain.map_node_error(excinfo.value), chain.InsufficientFunds)

    deployer = chain.account("deployer")  # it deployed the contracts: nonce 0 is spent
    with pytest.raises(Exception) as excinfo:
        chain_w3.eth.send_raw_transaction(deployer.sign_transaction(tx).raw_transaction)
    assert isinstance(chain.map_node_error(excinfo.value), chain.NonceTooLow)


def test_deploy_contracts_is_idempotent_and_redeploys_on_a_reset_chain(chain_w3):
    tester = chain_w3.provider.ethereum_tester
    before = tester.take_snapshot()
    call_command("deploy_contracts", "--reward-pool", "0")
    first = {d.name: d.address for d in ContractDeployment.objects.all()}
    assert set(first) == {"token", "escrow", "staking"}
    call_command("deploy_contracts", "--reward-pool", "0")
    assert {d.name: d.address for d in ContractDeployment.objects.all()} == first
    assert ChainTransaction.objects.filter(purpose__startswith="deploy_").count() == 3

    tester.revert_to_snapshot(before)  # the chain forgot our contracts
    call_command("deploy_contracts", "--reward-pool", "0")
    rows = list(ContractDeployment.objects.all())
    assert {r.generation for r in rows} == {2}
    for row in rows:
        assert chain_w3.eth.get_code(row.address) != b""


def test_a_racer_whose_call_now_reverts_because_the_winner_sent_it_gets_the_winners_tx(
    deployed, chain_w3, monkeypatch
):
    """Two workers send one keyed call: B looks for a recorded transaction before A has recorded
    it, then estimates gas after A's transaction was mined (a lease already settled reverts).
    B must answer with A's transaction, not a permanent revert."""
    from web3.exceptions import ContractLogicError

    winner = _mint(deployed["token"], 5, "mint:race")
    looked = {"before_the_winner": True}
    real_live_tx = chain._live_tx

    def live_tx(key):
        if looked.pop("before_the_winner", False):
            return None
        return real_live_tx(key)

    def estimate_reverts(tx, *args, **kwargs):
        raise ContractLogicError("execution reverted: LeaseNotActive")

    monkeypatch.setattr(chain, "_live_tx", live_tx)
    monkeypatch.setattr(chain_w3.eth, "estimate_gas", estimate_reverts)
    loser = _mint(deployed["token"], 5, "mint:race")
    assert loser.pk == winner.pk
    assert ChainTransaction.objects.filter(idempotency_key="mint:race").count() == 1
    monkeypatch.setattr(chain, "_live_tx", lambda key: None)
    with pytest.raises(chain.TransactionReverted):
        _mint(deployed["token"], 5, "mint:other")
