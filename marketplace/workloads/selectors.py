from django.db.models import QuerySet

from marketplace.accounts.models import User
from marketplace.core.errors import NotFoundError
from marketplace.orders.models import Order
from marketplace.workloads.models import Workload, WorkloadLogChunk


def workload_list_for(*, user: User, order_id: int) -> QuerySet[Workload]:
    """A renter sees the workloads of their own orders; staff all. Someone else's order is a
    404, as orders' own selector answers: its existence is not the caller's business."""
    order = Order.objects.filter(pk=order_id).only("renter_id").first()
    if order is None or (order.renter_id != user.pk and not user.is_staff):
        raise NotFoundError("No such order.", code="orders_not_found")
    return Workload.objects.filter(order_id=order_id).order_by("-pk")


def workload_get_for(*, user: User, order_id: int, workload_id: int) -> Workload:
    workload = workload_list_for(user=user, order_id=order_id).filter(pk=workload_id).first()
    if workload is None:
        raise NotFoundError("No such workload.", code="workloads_not_found")
    return workload


def workload_get_for_machine(*, machine_id: int, workload_id: int) -> Workload:
    """An agent reaches only the workloads of its own machine."""
    workload = Workload.objects.filter(pk=workload_id, machine_id=machine_id).first()
    if workload is None:
        raise NotFoundError("No such workload on this machine.", code="workloads_not_found")
    return workload


def workload_log_read(*, workload: Workload, offset: int, limit: int) -> tuple[bytes, int]:
    """Up to `limit` bytes of the workload's log from byte `offset`; returns (bytes, next
    offset). Chunks are contiguous (offset of chunk n+1 = offset + size of chunk n)."""
    chunks = (
        WorkloadLogChunk.objects.filter(workload=workload, offset__lt=offset + limit)
        .filter(offset__gte=_first_chunk_offset(workload, offset))
        .order_by("seq")
        .values_list("offset", "data")
    )
    out = bytearray()
    for chunk_offset, data in chunks:
        data = bytes(data)
        start = max(0, offset - chunk_offset)
        out += data[start:]
        if len(out) >= limit:
            break
    out = bytes(out[:limit])
    return out, offset + len(out)


def _first_chunk_offset(workload: Workload, offset: int) -> int:
    start = (
        WorkloadLogChunk.objects.filter(workload=workload, offset__lte=offset)
        .order_by("-offset")
        .values_list("offset", flat=True)
        .first()
    )
    return start or 0


def workload_devices(*, order: Order) -> list[dict]:
    """The leased devices of `order` on its machine: the machine's verified devices handed out
    to its active leases in order of their ids, so two leases on one machine never share one."""
    devices = sorted(order.machine.verified_devices or [], key=lambda d: d.get("index", 0))
    earlier = Order.objects.filter(
        machine_id=order.machine_id, state=Order.State.ACTIVE, pk__lt=order.pk
    ).values_list("accelerators", flat=True)
    start = sum(earlier)
    return devices[start : start + order.accelerators]
