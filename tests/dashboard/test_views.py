import re

import pytest
from django.urls import reverse

from marketplace.accounts.models import User
from tests.factories import MachineFactory, UserFactory

pytestmark = pytest.mark.django_db


def _count(html: str, cls: str, section: str) -> int:
    """Marks of class `cls` inside the <section id=section> of the page."""
    body = re.search(rf'<section[^>]*id="{section}".*?</section>', html, re.S).group(0)
    return len(re.findall(rf'class="{cls}"', body))


@pytest.mark.parametrize("name,args", [("dashboard:index", []), ("dashboard:machine", [1])])
def test_dashboard_redirects_anonymous_to_admin_login(client, name, args):
    response = client.get(reverse(name, args=args))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_dashboard_refuses_a_non_staff_user(client):
    alice = UserFactory(username="alice", role=User.Role.RENTER)
    client.force_login(alice)
    response = client.get(reverse("dashboard:index"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_empty_dashboard_says_there_is_no_data_yet(staff_client):
    html = staff_client.get(reverse("dashboard:index")).content.decode()
    assert "No listing has a verified TFLOP/s figure yet." in html
    assert "No market snapshots yet" in html
    assert "No benchmark job has been decided in the last 30 days." in html
    assert 'class="bar"' not in html


def test_dashboard_draws_the_seeded_market(staff_client, market):
    response = staff_client.get(reverse("dashboard:index"))
    assert response.status_code == 200
    html = response.content.decode()
    # One median bar and one min-max whisker per accelerator model.
    assert _count(html, "bar", "price-chart") == 6
    assert _count(html, "range", "price-chart") == 6
    # 24 h of snapshots every 2 h = 13 per series, 5 series of machines, 1 of escrow.
    assert _count(html, "point", "machines-chart") == 13 * 5
    assert _count(html, "point", "escrow-chart") == 13
    # matmul fp32, matmul bf16, conv2d fp32.
    assert _count(html, "bar", "pass-ratio-chart") == 3
    assert "H100 80GB HBM3" in html and "USD per verified TFLOP-hour" in html
    assert 'href="/admin/dashboard/machines/' in html


def test_price_bars_carry_integer_token_units(staff_client, market):
    html = staff_client.get(reverse("dashboard:index")).content.decode()
    values = re.findall(r'class="bar" data-value="(\d+)"', html)
    assert values and all(int(v) > 0 for v in values)


def test_machine_page_marks_rejections_with_reasons(staff_client, market):
    mallory = market["mallory"]
    html = staff_client.get(reverse("dashboard:machine", args=[mallory.pk])).content.decode()
    failed = html.count('class="point fail"')
    passed = len(re.findall(r'class="point" ', html))
    assert failed > 0 and passed > 0
    assert mallory.benchmark_jobs.exclude(state="verified").count() == failed
    assert "rejected or expired" in html
    assert any(r in html for r in ("freivalds_failed", "row_mismatch", "merkle_proof_invalid"))


def test_machine_page_for_a_machine_without_jobs_says_so(staff_client):
    machine = MachineFactory()
    response = staff_client.get(reverse("dashboard:machine", args=[machine.pk]))
    assert response.status_code == 200
    assert "This machine has no decided benchmark job yet." in response.content.decode()


def test_machine_page_404s_for_an_unknown_machine(staff_client):
    assert staff_client.get(reverse("dashboard:machine", args=[999999])).status_code == 404


def test_admin_links_to_the_dashboard_and_machine_history(client):
    # The change page needs the view permission; a superuser has it.
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    machine = MachineFactory()
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse("dashboard:index") in index
    change = client.get(reverse("admin:providers_machine_change", args=[machine.pk]))
    assert reverse("dashboard:machine", args=[machine.pk]) in change.content.decode()
