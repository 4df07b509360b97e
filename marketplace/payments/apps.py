from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "marketplace.payments"
    label = "payments"

    def ready(self) -> None:
        from marketplace.benchmarks.signals import (
            machine_verification_failed,
            machine_verification_passed,
        )
        from marketplace.orders.signals import order_ended
        from marketplace.payments import receivers

        order_ended.connect(receivers.on_order_ended, dispatch_uid="payments_order_ended")
        machine_verification_failed.connect(
            receivers.on_verification_failed, dispatch_uid="payments_verification_failed"
        )
        machine_verification_passed.connect(
            receivers.on_verification_passed, dispatch_uid="payments_verification_passed"
        )
