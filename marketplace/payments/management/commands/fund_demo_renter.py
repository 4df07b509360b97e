from django.core.management.base import BaseCommand, CommandError

from marketplace.core.errors import ApplicationError
from marketplace.payments.services import demo_renter_fund


class Command(BaseCommand):
    help = "Mint test stablecoin (and gas money) to an address; local chains only."

    def add_arguments(self, parser):
        parser.add_argument("--address", required=True)
        parser.add_argument("--amount", required=True, type=int, help="token units (6 decimals)")

    def handle(self, *args, address: str, amount: int, **options):
        if amount <= 0:
            raise CommandError("--amount must be positive")
        try:
            result = demo_renter_fund(address=address, amount=amount)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"minted {result['minted']} units to {result['address']} in {result['tx_hash']}"
            + (" and set its ETH balance for gas" if result["gave_eth"] else "")
        )
