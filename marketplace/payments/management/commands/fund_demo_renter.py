from django.core.management.base import BaseCommand, CommandError
from web3 import Web3

from marketplace.core.errors import ApplicationError
from marketplace.payments import chain
from marketplace.payments.services.faucet import demo_renter_fund


class Command(BaseCommand):
    help = "Mint test stablecoin (and gas money) to an address; local chains only."

    def add_arguments(self, parser):
        parser.add_argument("--address", required=True)
        parser.add_argument("--amount", required=True, type=int, help="token units (6 decimals)")
        parser.add_argument(
            "--top-up",
            action="store_true",
            help="mint only what the address lacks of --amount (a restarted chain kept its funds)",
        )

    def handle(self, *args, address: str, amount: int, top_up: bool, **options):
        if amount <= 0:
            raise CommandError("--amount must be positive")
        if top_up and Web3.is_address(address):
            token = chain.contract("token")
            held = token.functions.balanceOf(Web3.to_checksum_address(address)).call()
            if held >= amount:
                self.stdout.write(f"{address} already holds {held} units")
                return
            amount -= held
        try:
            result = demo_renter_fund(address=address, amount=amount)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"minted {result['minted']} units to {result['address']} in {result['tx_hash']}"
            + (" and set its ETH balance for gas" if result["gave_eth"] else "")
        )
