"""`make run`: the demo provider stakes what its newest machine needs as collateral before it is
listed (GET /providers/{id}/staking tells a real provider the same). Local chains only: its
wallet is Anvil's public dev account 1, whose key is published, and the tokens are minted."""

from django.core.management.base import BaseCommand, CommandError

from marketplace.payments import chain
from marketplace.payments.collateral import provider_collateral
from marketplace.payments.indexer import index
from marketplace.payments.services.faucet import demo_renter_fund
from marketplace.providers.models import Machine
from workers.renter.wallet import TransactionFailed, account_from_key, sign_and_send

# Anvil's (and Ganache's deterministic) account 1: the demo provider's wallet (demo_provider).
DEMO_PROVIDER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
DEMO_OWNER = "demo-provider"


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument(
            "--headroom",
            type=int,
            default=10 * 10**6,
            help="token units staked beyond the machines' requirement, for the locks of the "
            "leases the demo renter takes (a 1-hour demo lease locks about 0.06 USD)",
        )

    def handle(self, *args, headroom: int, **options):
        machine = (
            Machine.objects.filter(provider__owner__username=DEMO_OWNER).order_by("-pk").first()
        )
        if machine is None:
            raise CommandError("No demo machine: run demo_provider and register the agent first.")
        w3 = chain.get_web3()
        if not chain.is_local_chain(chain.chain_id(w3)):
            raise CommandError("demo_stake signs with a published key: local chains only.")
        account = account_from_key(DEMO_PROVIDER_KEY)
        if account.address.lower() != machine.provider.wallet_address.lower():
            raise CommandError(f"the demo provider's wallet is not {account.address}")
        state = provider_collateral(provider_id=machine.provider_id, adding_machine_id=machine.pk)
        if state.covered:
            self.stdout.write(f"provider {machine.provider_id} already covers {state.required}")
            return
        amount = state.shortfall + headroom
        demo_renter_fund(address=account.address, amount=amount)
        token, staking = chain.contract("token", w3), chain.contract("staking", w3)
        for to, data in (
            (token.address, token.encode_abi("approve", [staking.address, amount])),
            (staking.address, staking.encode_abi("stake", [amount])),
        ):
            try:
                sign_and_send(w3, DEMO_PROVIDER_KEY, to, data, timeout=60)
            except TransactionFailed as exc:
                raise CommandError(str(exc)) from exc
        index(w3)
        self.stdout.write(
            f"provider {machine.provider_id} staked {amount} units, the collateral its machine "
            f"{machine.pk} needs before it is listed"
        )
