"""Staff-only HTML pages in the admin's look. Queries are in selectors.py; these only turn
their rows into SVG (charts.py) and pick a template."""

from collections import defaultdict

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone

from marketplace.core.display import usd
from marketplace.core.errors import NotFoundError
from marketplace.dashboard import selectors
from marketplace.dashboard.charts import Bar, Series, hbar_chart, percent, time_chart


def _price_chart(rows):
    return hbar_chart(
        [
            Bar(
                label=r["model"],
                value=r["median"],
                low=r["low"],
                high=r["high"],
                note=f"{usd(r['median'])}  (n={r['listings']})",
            )
            for r in rows
        ],
        title="Price per verified TFLOP-hour by accelerator model",
        axis_label="USD per verified TFLOP-hour (bar: median, whisker: min–max)",
        fmt=usd,
        empty="No listing has a verified TFLOP/s figure yet.",
    )


def _machines_chart(snapshots):
    wanted = [
        ("online (fresh heartbeat)", "machines_online"),
        ("listed", "machines_listed"),
        ("verified", "machines_verified"),
        ("offline", "machines_offline"),
        ("suspended", "machines_suspended"),
    ]
    return time_chart(
        [Series(name, [(s.taken_at, getattr(s, a)) for s in snapshots]) for name, a in wanted],
        title="Machines over time",
        y_label="machines",
        fmt=lambda v: f"{v:g}",
        empty="No market snapshots yet: beat records one every few minutes.",
    )


def _escrow_chart(snapshots):
    return time_chart(
        [Series("funded, not settled", [(s.taken_at, s.escrow_amount) for s in snapshots])],
        title="Money in escrow over time",
        y_label="USD in escrow",
        fmt=lambda v: usd(v, 0 if v >= 100 * 10**6 else 2),
        empty="No market snapshots yet: beat records one every few minutes.",
    )


def _pass_ratio_chart(rows):
    return hbar_chart(
        [
            Bar(
                label=f"{r['kind']} {r['precision']}",
                value=r["ratio"],
                note=f"{percent(r['ratio'])}  ({r['verified']}/{r['decided']})",
            )
            for r in rows
        ],
        title="Verification pass ratio by kernel and precision",
        axis_label="share of decided jobs verified (last 30 days)",
        fmt=percent,
        empty="No benchmark job has been decided in the last 30 days.",
        top=1.0,
        color="#009E73",
    )


def _pass_ratio_daily_chart(rows):
    return time_chart(
        [Series("pass ratio", [(r["day"], r["ratio"]) for r in rows])],
        title="Verification pass ratio per day",
        y_label="share verified",
        fmt=percent,
        empty="No benchmark job has been decided in the last 14 days.",
        top=1.0,
        height=220,
    )


def _revenue_chart(rows):
    return time_chart(
        [
            Series("billed (provider + fee)", [(r["day"], r["billed"]) for r in rows]),
            Series("platform fees", [(r["day"], r["fees"]) for r in rows]),
        ],
        title="Revenue and fees per day",
        y_label="USD per day",
        fmt=lambda v: usd(v, 0 if v >= 100 * 10**6 else 2),
        empty="No lease has been settled on chain in the last 30 days.",
        height=240,
    )


def _volume_chart(rows):
    return time_chart(
        [
            Series("orders created", [(r["day"], r["created"]) for r in rows]),
            Series("of those funded", [(r["day"], r["funded"]) for r in rows]),
        ],
        title="Orders per day",
        y_label="orders per day",
        fmt=lambda v: f"{v:g}",
        empty="No order in the last 30 days.",
        height=240,
    )


@staff_member_required
def dashboard(request):
    now = timezone.now()
    snapshots = selectors.market_snapshots(now=now)
    context = {
        **admin.site.each_context(request),
        "title": "Market dashboard",
        "now": now,
        "market": selectors.market_now(now=now),
        "snapshot_seconds": settings.DASHBOARD_SNAPSHOT_SECONDS,
        "price_chart": _price_chart(selectors.price_per_tflop_by_model()),
        "machines_chart": _machines_chart(snapshots),
        "escrow_chart": _escrow_chart(snapshots),
        "pass_ratio_chart": _pass_ratio_chart(selectors.pass_ratio_by_kind_precision(now=now)),
        "pass_daily_chart": _pass_ratio_daily_chart(selectors.pass_ratio_by_day(now=now)),
        "machines": selectors.machines_for_dashboard(),
        "alerts": selectors.open_alerts(),
    }
    revenue = selectors.revenue_by_day(now=now)
    volume = selectors.order_volume_by_day(now=now)
    context.update(
        revenue_chart=_revenue_chart(revenue),
        volume_chart=_volume_chart(volume),
        billed_30d=usd(sum(r["billed"] for r in revenue)),
        fees_30d=usd(sum(r["fees"] for r in revenue)),
        settlements_30d=sum(r["settlements"] for r in revenue),
        orders_30d=sum(r["created"] for r in volume),
        funded_30d=sum(r["funded"] for r in volume),
    )
    context["escrow_now"] = usd(context["market"]["escrow_amount"], 2)
    return render(request, "dashboard/index.html", context)


@staff_member_required
def machine(request, machine_id: int):
    try:
        history = selectors.machine_benchmark_history(machine_id=machine_id)
    except NotFoundError as exc:
        raise Http404(exc.message) from exc
    by_series = defaultdict(lambda: Series(""))
    for job in history["jobs"]:
        series = by_series[(job["kind"], job["precision"])]
        series.name = f"{job['kind']} {job['precision']}"
        series.passed = series.passed or []
        # A failed job may have no timing (it never committed): mark it on the axis.
        series.points.append((job["finished_at"], job["measured_tflops"] or 0.0))
        series.passed.append(job["state"] == "verified")
    chart = time_chart(
        [by_series[key] for key in sorted(by_series)],
        title="Measured TFLOP/s per job",
        y_label="TFLOP/s (server-timed)",
        fmt=lambda v: f"{v:g}",
        empty="This machine has no decided benchmark job yet.",
        height=340,
        width=900,
    )
    context = {
        **admin.site.each_context(request),
        "title": f"Benchmark history: {history['machine']}",
        "chart": chart,
        **history,
    }
    return render(request, "dashboard/machine.html", context)
