from django.apps import AppConfig


class BenchmarksConfig(AppConfig):
    name = "marketplace.benchmarks"
    label = "benchmarks"

    def ready(self) -> None:
        from django.core.signals import got_request_exception
        from django.db.models.signals import post_save

        from marketplace.benchmarks import receivers, wakeups
        from marketplace.benchmarks.models import BenchmarkJob

        got_request_exception.connect(
            receivers.on_request_exception, dispatch_uid="benchmarks_platform_incident"
        )
        # A job created, challenged or ended wakes its machine's waiting agent, wherever it is
        # connected (marketplace/benchmarks/wakeups.py).
        post_save.connect(wakeups.on_job_saved, sender=BenchmarkJob, dispatch_uid="agent_wake")
