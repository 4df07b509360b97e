"""Creates (idempotently) the demo provider owner and Provider, and prints a fresh registration
token as the last line, so a Makefile can do TOKEN=$(python manage.py demo_provider | tail -1)."""

import secrets

from django.core.management.base import BaseCommand
from django.db import transaction

from marketplace.accounts.models import User
from marketplace.providers.models import Provider
from marketplace.providers.services import provider_create, registration_token_create

USERNAME = "demo-provider"
WALLET = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


class Command(BaseCommand):
    help = __doc__

    @transaction.atomic
    def handle(self, *args, **options):
        user = User.objects.filter(username=USERNAME).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user = User.objects.create_user(
                username=USERNAME, password=password, role=User.Role.PROVIDER_OWNER
            )
            self.stdout.write(f"created user {USERNAME} with password {password}")
        else:
            self.stdout.write(f"user {USERNAME} exists (password unchanged)")
        provider = Provider.objects.filter(owner=user).order_by("pk").first()
        if provider is None:
            provider = provider_create(owner=user, name="Demo provider", wallet_address=WALLET)
            self.stdout.write(f"created provider {provider.pk} with wallet {WALLET}")
        _, raw = registration_token_create(provider=provider, user=user)
        self.stdout.write(raw)
