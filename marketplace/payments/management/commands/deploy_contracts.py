from django.core.management.base import BaseCommand

from contracts import chain
from marketplace.payments.services import contracts_deploy


class Command(BaseCommand):
    help = "Deploy token, escrow and staking to CHAIN_RPC_URL unless already there (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--reward-pool",
            type=int,
            default=100_000 * 10**6,
            help="token units minted into the staking reward pool (local chains only)",
        )

    def handle(self, *args, reward_pool: int, **options):
        deployments = contracts_deploy(reward_pool=reward_pool)
        cid = chain.chain_id()
        for name, row in deployments.items():
            self.stdout.write(f"{name:<8} {row.address} (chain {cid}, generation {row.generation})")
