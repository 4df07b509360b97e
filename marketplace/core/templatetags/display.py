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


@register.filter
def event_args(event, leave_out: str = "") -> str:
    """A chain event's arguments (or a bare arguments dict); `leave_out` names arguments the page
    already shows (comma-separated)."""
    args, name = (event, "") if isinstance(event, dict) else (event.args, event.name)
    return display.event_args(args, frozenset(leave_out.split(",")), event=name)
