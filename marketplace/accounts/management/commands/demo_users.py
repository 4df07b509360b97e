import os
import secrets

from django.core.management.base import BaseCommand
from django.db import transaction

from marketplace.accounts.models import User
from marketplace.accounts.services import api_token_create


class Command(BaseCommand):
    help = "Creates (or resets) the demo staff user and demo renter; prints their credentials."

    def add_arguments(self, parser):
        parser.add_argument("--output", help="Also write the credentials to this file.")

    @transaction.atomic
    def handle(self, *args, output=None, **options):
        lines = []
        for username, role, is_staff in [
            ("admin", User.Role.RENTER, True),
            ("demo-renter", User.Role.RENTER, False),
        ]:
            user, _ = User.objects.get_or_create(username=username, defaults={"role": role})
            # A fresh random password each start: nothing guessable is ever left on a demo box.
            password = secrets.token_urlsafe(12)
            user.set_password(password)
            user.role = role
            user.is_staff = user.is_superuser = is_staff
            user.save()
            _, token = api_token_create(user=user, name="demo")
            lines.append(f"{username:12} password: {password}   API token: {token}")
        text = "\n".join(lines)
        if output:
            credentials_write(output, text + "\n")
        self.stdout.write(text)


def credentials_write(path: str, text: str) -> None:
    """Passwords and tokens: readable by the owner only. Created 0600 (never wider, whatever the
    umask), and narrowed to 0600 when an older run left the file more open."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fd, 0o600)
        fh.write(text)
