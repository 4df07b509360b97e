"""Receivers of lower apps' signals. Workloads hold no money: closing them after the order's
transaction commits is safe, and workloads_sweep closes any a crash left open."""

from marketplace.orders.models import Order


def on_order_ended(sender, order_id: int, **kwargs) -> None:
    from marketplace.workloads.services import workloads_end_for_order

    reason = Order.objects.filter(pk=order_id).values_list("end_reason", flat=True).first()
    workloads_end_for_order(order_id=order_id, reason=reason or "ended")
