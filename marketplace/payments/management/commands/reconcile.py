"""Compares the money the database records with the chain itself; prints one line per
difference, or exactly "0 differences", and exits 1 when they differ. When the node is not the
chain this database belongs to (it was reset), says so and what to do, and exits 2."""

import sys

from django.core.management.base import BaseCommand, CommandError

from marketplace.payments import chain
from marketplace.payments.reconciliation import reconcile


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument(
            "--block",
            type=int,
            default=None,
            help="read the chain at this block (default: the last block the indexer made final)",
        )

    def handle(self, *args, block: int | None, **options):
        try:
            result = reconcile(block=block)
        except chain.TransientChainError as exc:
            raise CommandError(f"cannot reconcile yet: {exc}") from exc
        if result.reset is not None:
            self.stdout.write(f"chain reset: nothing compared. {result.reset.message}")
            sys.exit(2)
        if options["verbosity"] > 1:
            self.stderr.write(f"chain {result.chain_id}, read at block {result.block}")
        if not result.differences:
            self.stdout.write("0 differences")
            return
        for diff in result.differences:
            self.stdout.write(diff.line())
        self.stdout.write(f"{len(result.differences)} differences")
        # A non-zero exit, without a traceback, is what cron and CI act on.
        sys.exit(1)
