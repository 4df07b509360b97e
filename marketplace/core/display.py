"""How people read money and time, in one place: the admin, its templates and the dashboard all
format through these functions, so an amount never shows as a bare integer on one page and as
dollars on the next.

Money is an integer count of the payment token's smallest unit (PAYMENT_TOKEN_DECIMALS = 6:
1 unit = 1 micro-USD). Shown exactly (no rounding: an operator comparing with the chain needs
every unit), with the raw units beside it.
"""

import functools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings

DASH = "–"


def _decimals() -> int:
    return settings.PAYMENT_TOKEN_DECIMALS


def usd(units: int | Decimal | None, places: int | None = None) -> str:
    """Dollars for a label. `places=None` is exact: at least 2 decimals, more only when the units
    need them ($2.4984, $0.000694). A number of places rounds, for chart axes and big figures."""
    if units is None:
        return DASH
    dollars = Decimal(int(units)).scaleb(-_decimals())
    sign = "-" if dollars < 0 else ""
    dollars = abs(dollars)
    if places is None:
        text = f"{dollars:,.{_decimals()}f}"
        whole, _, fraction = text.partition(".")
        fraction = fraction.rstrip("0").ljust(2, "0")
        return f"{sign}${whole}.{fraction}"
    return f"{sign}${dollars:,.{places}f}"


def units(value: int | Decimal | None) -> str:
    return DASH if value is None else f"{int(value):,} units"


def money(value: int | Decimal | None, per: str = "") -> str:
    """'$2.4984 per accelerator-hour (2,498,400 units)': dollars, the unit priced, raw units."""
    if value is None:
        return DASH
    unit = f" per {per}" if per else ""
    return f"{usd(value)}{unit} ({units(value)})"


def timestamp(value: datetime | int | None) -> str:
    """UTC to the second (billing is per second). An int is a Unix time, as the chain keeps it."""
    if value is None or value == 0:
        return DASH
    if isinstance(value, int):
        value = datetime.fromtimestamp(value, tz=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: int | None) -> str:
    """'14,400 s (4 h 0 min 0 s)': the exact seconds billed, and a reading of them."""
    if seconds is None:
        return DASH
    parts = str(timedelta(seconds=int(seconds))).split(", ")
    hms = parts[-1].split(":")
    reading = f"{int(hms[0])} h {int(hms[1])} min {int(hms[2])} s"
    if len(parts) == 2:
        reading = f"{parts[0]} {reading}"
    return f"{int(seconds):,} s ({reading})"


# Contract event arguments that are token amounts (uint256 token units, stored as strings).
AMOUNT_ARGS = frozenset(
    {"amount", "ratePerSecond", "providerAmount", "feeAmount", "refundAmount", "newStake"}
)


@functools.cache
def _event_arg_order() -> dict[str, dict[str, int]]:
    """Each platform contract event's arguments in the order the contract declares them. The
    stored arguments are a JSON object, whose key order PostgreSQL's jsonb does not keep."""
    from contracts.deploy import CONTRACT_ARTIFACTS, load_artifact

    order: dict[str, dict[str, int]] = {}
    for artifact in CONTRACT_ARTIFACTS.values():
        for item in load_artifact(artifact)["abi"]:
            if item.get("type") == "event":
                names = [entry["name"] for entry in item.get("inputs", [])]
                order.setdefault(item["name"], {name: i for i, name in enumerate(names)})
    return order


def event_args(
    args: dict | None, leave_out: frozenset[str] = frozenset(), *, event: str = ""
) -> str:
    """A contract event's arguments on one line, in the contract's declared order, amounts as
    dollars with their units."""
    rank = _event_arg_order().get(event, {})
    items = sorted((args or {}).items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))
    parts = []
    for key, value in items:
        if key in leave_out:
            continue
        if key in AMOUNT_ARGS:
            value = money(int(value))
        elif key == "secondsUsed":
            value = duration(int(value))
        parts.append(f"{key}={value}")
    return "; ".join(parts)
