"""Money is conserved whatever the hot keys, renters and providers do, in any order; the
staking machine also holds the contract to its lease locks and its per-period caps.

Each state machine keeps a Python model of who should hold what, drives the contracts with
random sequences of calls (valid and invalid), and after every step checks the model against
the chain and the conservation identity.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from .conftest import FEE_BPS, LIMITS, RECLAIM_DELAY, UNSTAKE_DELAY, USDC, events, lease_id

SETTINGS = settings(
    max_examples=10,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

FUNDED, STARTED, SETTLED, FAILED, RECLAIMED = 1, 2, 3, 4, 5
OPEN = (FUNDED, STARTED)


def test_escrow_conserves_money(chain, token, escrow, actors):
    renters = (actors.alice, actors.carol)
    providers = (actors.bob, actors.mallory)
    payees = (*renters, *providers, actors.treasury)

    class EscrowMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.snapshot = chain.tester.take_snapshot()
            self.start_balances = {a: token.functions.balanceOf(a).call() for a in payees}
            self.expected = dict(self.start_balances)
            self.leases: dict[int, dict] = {}
            # What the escrow owes each payee (pull payments) and the fees it holds.
            self.credits = {a: escrow.functions.credits(a).call() for a in payees}
            self.accrued = escrow.functions.accruedFees().call()
            self.deposits = self.paid_out = 0

        def teardown(self) -> None:
            chain.tester.revert_to_snapshot(self.snapshot)

        def _pick(self, index: int) -> int | None:
            if not self.leases:
                return None
            return sorted(self.leases)[index % len(self.leases)]

        def _close(self, n: int, seconds: int, outcome: int, event: dict) -> None:
            lease = self.leases[n]
            billed = min(seconds, lease["duration"])
            cost = billed * lease["rate"]
            fee = cost * FEE_BPS // 10_000
            assert event["secondsUsed"] == billed
            assert (event["providerAmount"], event["feeAmount"], event["refundAmount"]) == (
                cost - fee,
                fee,
                lease["amount"] - cost,
            )
            # Credited, not paid: no payee's token balance moves until it withdraws.
            self.credits[lease["provider"]] += cost - fee
            self.credits[lease["renter"]] += lease["amount"] - cost
            self.accrued += fee
            lease["status"] = outcome

        @rule(
            renter=st.sampled_from(renters),
            provider=st.sampled_from(providers),
            rate=st.integers(1, 10 * USDC),
            duration=st.integers(1, 7_200),
            extra=st.integers(0, 10 * USDC),
        )
        def fund(self, renter, provider, rate, duration, extra):
            n = len(self.leases) + 1
            amount = rate * duration + extra
            chain.transact(
                escrow.functions.fund(lease_id(n), provider, amount, rate, duration), renter
            )
            self.leases[n] = {
                "renter": renter,
                "provider": provider,
                "rate": rate,
                "duration": duration,
                "amount": amount,
                "status": FUNDED,
                "funded_at": chain.now(),
            }
            self.expected[renter] -= amount
            self.deposits += amount

        @precondition(lambda self: self.leases)
        @rule(index=st.integers(0, 1_000))
        def start(self, index):
            n = self._pick(index)
            fn = escrow.functions.start(lease_id(n))
            if self.leases[n]["status"] == FUNDED:
                chain.transact(fn, actors.operator)
                self.leases[n]["status"] = STARTED
            else:
                chain.expect_revert(fn, actors.operator, "LeaseNotFunded", escrow)

        @precondition(lambda self: self.leases)
        @rule(index=st.integers(0, 1_000), seconds=st.integers(0, 10_000), failed=st.booleans())
        def close(self, index, seconds, failed):
            n = self._pick(index)
            if failed:
                fn = escrow.functions.fail(lease_id(n), seconds, n.to_bytes(32, "little"))
            else:
                fn = escrow.functions.settle(lease_id(n), seconds)
            if self.leases[n]["status"] not in OPEN:
                chain.expect_revert(fn, actors.operator, "LeaseNotOpen", escrow)
                return
            receipt = chain.transact(fn, actors.operator)
            (event,) = events(escrow, "LeaseFailed" if failed else "LeaseSettled", receipt)
            if failed:
                assert event["reportHash"] == n.to_bytes(32, "little")
            self._close(n, seconds, FAILED if failed else SETTLED, event)

        @precondition(lambda self: self.leases)
        @rule(picks=st.lists(st.tuples(st.integers(0, 1_000), st.integers(0, 10_000)), max_size=8))
        def settle_batch(self, picks):
            chosen: dict[int, int] = {}
            for index, seconds in picks:
                n = self._pick(index)
                if self.leases[n]["status"] in OPEN:
                    chosen.setdefault(n, seconds)
            if not chosen:
                return
            # Sorted by provider, as the backend sends them (repeated payees hit warm slots).
            order = sorted(chosen, key=lambda n: self.leases[n]["provider"])
            receipt = chain.transact(
                escrow.functions.settleBatch(
                    [lease_id(n) for n in order], [chosen[n] for n in order]
                ),
                actors.operator,
            )
            settled = events(escrow, "LeaseSettled", receipt)
            assert [e["leaseId"] for e in settled] == [lease_id(n) for n in order]
            for n, event in zip(order, settled, strict=True):
                self._close(n, chosen[n], SETTLED, event)

        @precondition(lambda self: self.leases)
        @rule(index=st.integers(0, 1_000), wait=st.booleans())
        def reclaim(self, index, wait):
            n = self._pick(index)
            lease = self.leases[n]
            deadline = lease["funded_at"] + RECLAIM_DELAY
            if wait and chain.pending_timestamp() < deadline:
                chain.next_block_at(deadline)
            fn = escrow.functions.reclaim(lease_id(n))
            if lease["status"] != FUNDED:
                chain.expect_revert(fn, lease["renter"], "LeaseNotFunded", escrow)
            elif chain.pending_timestamp() < deadline:
                chain.expect_revert(fn, lease["renter"], "ReclaimTooEarly", escrow)
            else:
                chain.transact(fn, lease["renter"])
                lease["status"] = RECLAIMED
                self.expected[lease["renter"]] += lease["amount"]
                self.paid_out += lease["amount"]

        @rule(
            account=st.sampled_from(payees),
            to=st.sampled_from(payees),
            share=st.integers(0, 12),  # tenths of the credit; above 10 over-withdraws
        )
        def withdraw(self, account, to, share):
            credit = self.credits[account]
            amount = credit * share // 10 + (1 if share > 10 else 0)
            fn = escrow.functions.withdraw(to, amount)
            if amount == 0:
                chain.expect_revert(fn, account, "NothingToWithdraw", escrow)
            elif amount > credit:
                assert chain.expect_revert(fn, account, "InsufficientCredit", escrow) == (
                    credit,
                    amount,
                )
            else:
                chain.transact(fn, account)
                self.credits[account] -= amount
                self.expected[to] += amount
                self.paid_out += amount

        @rule(caller=st.sampled_from(payees))
        def withdraw_fees(self, caller):
            fn = escrow.functions.withdrawFees()
            if self.accrued == 0:
                chain.expect_revert(fn, caller, "NothingToWithdraw", escrow)
                return
            chain.transact(fn, caller)
            self.expected[actors.treasury] += self.accrued
            self.paid_out += self.accrued
            self.accrued = 0

        @invariant()
        def conserved(self):
            held = token.functions.balanceOf(escrow.address).call()
            assert self.deposits == self.paid_out + held
            open_amount = sum(
                lease["amount"] for lease in self.leases.values() if lease["status"] in OPEN
            )
            assert held == open_amount + sum(self.credits.values()) + self.accrued
            assert {a: escrow.functions.credits(a).call() for a in payees} == self.credits
            assert escrow.functions.accruedFees().call() == self.accrued
            assert {a: token.functions.balanceOf(a).call() for a in payees} == self.expected

    run_state_machine_as_test(EscrowMachine, settings=SETTINGS)


def test_staking_conserves_money(chain, token, staking, actors):
    providers = (actors.bob, actors.mallory)
    funders = (actors.alice, actors.carol)

    class StakingMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.snapshot = chain.tester.take_snapshot()
            self.staked = dict.fromkeys(providers, 0)
            self.pending = dict.fromkeys(providers, 0)
            self.unlock = dict.fromkeys(providers, 0)
            self.locks = dict.fromkeys(providers, (0, 0))  # (amount, until)
            self.used: dict[int, list[int]] = {}  # period -> [slashed, rewarded]
            self.stakes = self.slashes = self.withdrawals = self.pool = 0

        def _usage(self) -> list[int]:
            """The caps' running totals for the period the next transaction falls in."""
            period = chain.pending_timestamp() // LIMITS.period_seconds
            return self.used.setdefault(period, [0, 0])

        def teardown(self) -> None:
            chain.tester.revert_to_snapshot(self.snapshot)

        @rule(provider=st.sampled_from(providers), amount=st.integers(1, 1_000 * USDC))
        def stake(self, provider, amount):
            chain.transact(staking.functions.stake(amount), provider)
            self.staked[provider] += amount
            self.stakes += amount

        @rule(provider=st.sampled_from(providers), amount=st.integers(1, 1_000 * USDC))
        def request_unstake(self, provider, amount):
            fn = staking.functions.requestUnstake(amount)
            if amount > self.staked[provider]:
                chain.expect_revert(fn, provider, "InsufficientStake", staking)
                return
            locked, until = self.locks[provider]
            if chain.pending_timestamp() < until and self.staked[provider] - amount < locked:
                args = chain.expect_revert(fn, provider, "StakeLocked", staking)
                assert args == (locked, until)
                return
            receipt = chain.transact(fn, provider)
            self.staked[provider] -= amount
            self.pending[provider] += amount
            self.unlock[provider] = events(staking, "UnstakeRequested", receipt)[0]["unlockTime"]

        @rule(provider=st.sampled_from(providers), wait=st.booleans())
        def withdraw(self, provider, wait):
            if wait and chain.pending_timestamp() < self.unlock[provider]:
                chain.next_block_at(self.unlock[provider])
            fn = staking.functions.withdraw()
            if self.pending[provider] == 0:
                chain.expect_revert(fn, provider, "NothingPending", staking)
            elif chain.pending_timestamp() < self.unlock[provider]:
                chain.expect_revert(fn, provider, "StillLocked", staking)
            else:
                chain.transact(fn, provider)
                self.withdrawals += self.pending[provider]
                self.pending[provider] = 0

        @rule(
            provider=st.sampled_from(providers),
            amount=st.integers(1, 2_000 * USDC),
            report=st.binary(min_size=32, max_size=32),
        )
        def slash(self, provider, amount, report):
            fn = staking.functions.slash(provider, amount, report)
            slashable = self.staked[provider] + self.pending[provider]
            if amount > slashable:
                chain.expect_revert(fn, actors.operator, "SlashExceedsStake", staking)
                return
            usage = self._usage()
            if usage[0] + amount > LIMITS.slash_cap:
                chain.expect_revert(fn, actors.operator, "SlashCapExceeded", staking)
                return
            usage[0] += amount
            receipt = chain.transact(fn, actors.operator)
            assert events(staking, "Slashed", receipt) == [
                {"provider": provider, "amount": amount, "reportHash": report}
            ]
            from_stake = min(amount, self.staked[provider])
            self.staked[provider] -= from_stake
            self.pending[provider] -= amount - from_stake
            self.slashes += amount

        @rule(funder=st.sampled_from(funders), amount=st.integers(1, 500 * USDC))
        def fund_rewards(self, funder, amount):
            chain.transact(staking.functions.fundRewards(amount), funder)
            self.pool += amount

        @rule(provider=st.sampled_from(providers), amount=st.integers(1, 500 * USDC))
        def reward(self, provider, amount):
            fn = staking.functions.reward(provider, amount, b"\x07" * 32)
            if amount > self.pool:
                chain.expect_revert(fn, actors.operator, "RewardExceedsPool", staking)
                return
            usage = self._usage()
            if usage[1] + amount > LIMITS.reward_cap:
                chain.expect_revert(fn, actors.operator, "RewardCapExceeded", staking)
                return
            usage[1] += amount
            chain.transact(fn, actors.operator)
            self.pool -= amount

        @rule(
            provider=st.sampled_from(providers),
            amount=st.integers(0, 2_000 * USDC),
            ahead=st.integers(0, 2 * UNSTAKE_DELAY),
        )
        def lock(self, provider, amount, ahead):
            until = chain.pending_timestamp() + ahead
            chain.transact(staking.functions.lock(provider, amount, until), actors.operator)
            self.locks[provider] = (amount, until)

        @rule(seconds=st.integers(1, 2 * UNSTAKE_DELAY))
        def wait(self, seconds):
            chain.next_block_at(chain.pending_timestamp() + seconds)

        @invariant()
        def conserved(self):
            balance = token.functions.balanceOf(staking.address).call()
            pool = staking.functions.rewardPool().call()
            assert pool == self.pool
            assert self.stakes - self.slashes - self.withdrawals == balance - pool
            for p in providers:
                assert tuple(staking.functions.stakeOf(p).call()[:2]) == (
                    self.staked[p],
                    self.pending[p],
                )
                assert tuple(staking.functions.lockOf(p).call()) == self.locks[p]

    run_state_machine_as_test(StakingMachine, settings=SETTINGS)
