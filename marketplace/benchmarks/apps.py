from django.apps import AppConfig


class BenchmarksConfig(AppConfig):
    name = "marketplace.benchmarks"
    label = "benchmarks"

    def ready(self) -> None:
        from django.core.signals import got_request_exception

        from marketplace.benchmarks import receivers

        got_request_exception.connect(
            receivers.on_request_exception, dispatch_uid="benchmarks_platform_incident"
        )
