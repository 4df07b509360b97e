"""Where listings and orders ask whether a provider's stake covers what it offers, without
importing payments (apps depend one way: listings < orders < payments). Payments registers its
answers at app ready (PaymentsConfig.ready); with nothing registered every question is answered
"covered", so the lower apps work on their own.

`covers(provider_id)` decides searchability; `require(provider_id, ...)` raises the 409
`collateral_insufficient` ApplicationError that names the shortfall."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class _Require(Protocol):
    def __call__(
        self,
        *,
        provider_id: int,
        adding_machine_id: int | None = None,
        adding_lease: dict | None = None,
        excluding_order_id: int | None = None,
    ) -> None: ...


_covers: Callable[..., bool] | None = None
_require: _Require | None = None


def register(*, covers: Callable[..., bool], require: _Require) -> None:
    global _covers, _require
    _covers, _require = covers, require


def covers(*, provider_id: int) -> bool:
    """Whether the provider's free stake covers its listed machines now."""
    return True if _covers is None else _covers(provider_id=provider_id)


def require(
    *,
    provider_id: int,
    adding_machine_id: int | None = None,
    adding_lease: dict | None = None,
    excluding_order_id: int | None = None,
) -> None:
    """Raises collateral_insufficient unless the free stake covers the listed machines, plus
    `adding_machine_id` about to be listed, plus `adding_lease` ({"escrow_amount",
    "accelerators", "duration_seconds"}) about to be taken."""
    if _require is not None:
        _require(
            provider_id=provider_id,
            adding_machine_id=adding_machine_id,
            adding_lease=adding_lease,
            excluding_order_id=excluding_order_id,
        )
