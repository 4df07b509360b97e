from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "marketplace.payments"
    label = "payments"

    def ready(self) -> None:
        from marketplace.benchmarks.signals import machine_verification_failed
        from marketplace.core import collateral as collateral_registry
        from marketplace.orders.signals import order_ended
        from marketplace.payments import collateral, receivers

        # Listings and orders ask through core (they never import payments).
        collateral_registry.register(
            covers=collateral.provider_collateral_covers,
            require=collateral.provider_collateral_require,
        )

        order_ended.connect(receivers.on_order_ended, dispatch_uid="payments_order_ended")
        machine_verification_failed.connect(
            receivers.on_verification_failed, dispatch_uid="payments_verification_failed"
        )
