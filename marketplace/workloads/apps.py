from django.apps import AppConfig


class WorkloadsConfig(AppConfig):
    name = "marketplace.workloads"
    label = "workloads"

    def ready(self) -> None:
        from marketplace.orders.signals import order_ended
        from marketplace.workloads import receivers

        # A lease that ends (stopped, elapsed, pre-empted, failed re-verification, machine
        # offline) takes its workloads with it; the beat sweep catches any signal lost in a crash.
        order_ended.connect(receivers.on_order_ended, dispatch_uid="workloads_order_ended")
