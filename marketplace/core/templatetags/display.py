"""Template filters over marketplace.core.display, so templates format money and time the same
way as admin columns: {% load display %} {{ order.escrow_amount|money }}."""

from django import template

from marketplace.core import display

register = template.Library()


@register.filter
def money(value, per=""):
    return display.money(value, per)


@register.filter
def usd(value):
    return display.usd(value)


@register.filter
def utc(value):
    return display.timestamp(value)


@register.filter
def duration(value):
    return display.duration(value)


# Contract event arguments that are token amounts (uint256 token units, stored as strings).
AMOUNT_ARGS = {
    "amount",
    "ratePerSecond",
    "providerAmount",
    "feeAmount",
    "refundAmount",
    "newStake",
}


@register.filter
def event_args(args: dict, leave_out: str = "") -> str:
    """A contract event's arguments on one line, amounts as dollars with their units;
    `leave_out` names arguments the page already shows (comma-separated)."""
    parts = []
    skip = set(leave_out.split(","))
    for key, value in (args or {}).items():
        if key in skip:
            continue
        if key in AMOUNT_ARGS:
            value = display.money(int(value))
        elif key == "secondsUsed":
            value = display.duration(int(value))
        parts.append(f"{key}={value}")
    return "; ".join(parts)
