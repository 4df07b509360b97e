from django.core.management.base import BaseCommand, CommandError

from marketplace.payments import chain
from marketplace.payments.genesis import ChainResetError
from marketplace.payments.services.deployment import contracts_deploy

# scripts/chain.sh tells this refusal from a failure: it keeps the node up and says what to do.
EXIT_CHAIN_RESET = 3


class Command(BaseCommand):
    help = "Deploy token, escrow and staking to CHAIN_RPC_URL unless already there (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--reward-pool",
            type=int,
            default=100_000 * 10**6,
            help="token units minted into the staking reward pool (local chains only)",
        )
        parser.add_argument(
            "--forget-reset-chain",
            action="store_true",
            help="on a reset local chain, deploy anew even though the database holds money state "
            "of the old one (its transactions are marked failed and its events dropped)",
        )

    def handle(self, *args, reward_pool: int, forget_reset_chain: bool, **options):
        try:
            deployments = contracts_deploy(
                reward_pool=reward_pool, forget_reset_chain=forget_reset_chain
            )
        except ChainResetError as exc:
            raise CommandError(str(exc), returncode=EXIT_CHAIN_RESET) from exc
        cid = chain.chain_id()
        for name, row in deployments.items():
            self.stdout.write(f"{name:<8} {row.address} (chain {cid}, generation {row.generation})")
