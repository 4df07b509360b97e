from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, Web3

from contracts.deploy import deploy

from .conftest import MAX_UINT, STARTING_BALANCE, USDC, Chain, events


def test_token_metadata(token):
    assert token.functions.decimals().call() == 6
    assert token.functions.symbol().call() == "tUSD"
    assert token.functions.name().call() == "Test USD"


def test_transfer_moves_balance_and_emits_event(chain, token, actors):
    receipt = chain.transact(token.functions.transfer(actors.bob, 5 * USDC), actors.alice)

    assert token.functions.balanceOf(actors.alice).call() == STARTING_BALANCE - 5 * USDC
    assert token.functions.balanceOf(actors.bob).call() == STARTING_BALANCE + 5 * USDC
    assert events(token, "Transfer", receipt) == [
        {"from": actors.alice, "to": actors.bob, "value": 5 * USDC}
    ]


def test_transfer_beyond_balance_is_refused(chain, token, actors):
    args = chain.expect_revert(
        token.functions.transfer(actors.bob, STARTING_BALANCE + 1),
        actors.alice,
        "InsufficientBalance",
        token,
    )
    assert args == (actors.alice, STARTING_BALANCE, STARTING_BALANCE + 1)


def test_transfer_to_zero_address_is_refused(chain, token, actors):
    zero = "0x" + "00" * 20
    chain.expect_revert(token.functions.transfer(zero, 1), actors.alice, "ZeroAddress", token)


def test_transfer_from_spends_allowance(chain, token, actors):
    receipt = chain.transact(token.functions.approve(actors.carol, 7 * USDC), actors.bob)
    assert events(token, "Approval", receipt) == [
        {"owner": actors.bob, "spender": actors.carol, "value": 7 * USDC}
    ]

    chain.transact(token.functions.transferFrom(actors.bob, actors.alice, 3 * USDC), actors.carol)

    assert token.functions.allowance(actors.bob, actors.carol).call() == 4 * USDC
    assert token.functions.balanceOf(actors.alice).call() == STARTING_BALANCE + 3 * USDC


def test_transfer_from_beyond_allowance_is_refused(chain, token, actors):
    chain.transact(token.functions.approve(actors.carol, 2 * USDC), actors.bob)

    args = chain.expect_revert(
        token.functions.transferFrom(actors.bob, actors.alice, 2 * USDC + 1),
        actors.carol,
        "InsufficientAllowance",
        token,
    )
    assert args == (actors.carol, 2 * USDC, 2 * USDC + 1)
    assert token.functions.balanceOf(actors.bob).call() == STARTING_BALANCE


def test_unlimited_allowance_is_not_decremented(chain, token, actors):
    chain.transact(token.functions.approve(actors.carol, MAX_UINT), actors.bob)
    chain.transact(token.functions.transferFrom(actors.bob, actors.alice, USDC), actors.carol)
    assert token.functions.allowance(actors.bob, actors.carol).call() == MAX_UINT


def test_owner_mints_on_local_chain(chain, token, actors):
    supply = token.functions.totalSupply().call()
    receipt = chain.transact(token.functions.mint(actors.carol, 9 * USDC), actors.owner)

    assert token.functions.totalSupply().call() == supply + 9 * USDC
    assert events(token, "Transfer", receipt)[0]["value"] == 9 * USDC
    assert chain.w3.eth.chain_id == token.functions.ETH_TESTER_CHAIN_ID().call()


def test_mint_by_non_owner_is_refused(chain, token, actors):
    args = chain.expect_revert(
        token.functions.mint(actors.mallory, USDC), actors.mallory, "NotOwner", token
    )
    assert args == (actors.mallory,)


def test_mint_is_refused_on_a_non_local_chain(actors):
    # A separate py-evm chain whose CHAINID opcode answers 1 (mainnet): the class attribute is
    # what py-evm feeds to the EVM, and this class is private to this backend instance.
    backend = PyEVMBackend()
    type(backend.chain).chain_id = 1
    mainnet = Chain(Web3(EthereumTesterProvider(EthereumTester(backend=backend))))
    owner = mainnet.w3.eth.accounts[0]
    token = deploy(mainnet.w3, "TestStablecoin", "Test USD", "tUSD", sender=owner)

    assert not token.functions.isLocalChain().call()
    args = mainnet.expect_revert(
        token.functions.mint(owner, USDC), owner, "MintingDisabledOnChain", token
    )
    assert args == (1,)
    assert token.functions.totalSupply().call() == 0


def test_local_chain_ids_are_anvil_ganache_and_eth_tester(token):
    local_ids = {
        token.functions.ANVIL_CHAIN_ID().call(),
        token.functions.GANACHE_CHAIN_ID().call(),
        token.functions.ETH_TESTER_CHAIN_ID().call(),
    }
    assert local_ids == {31337, 1337, 131277322940537}
