from django.apps import AppConfig


class ListingsConfig(AppConfig):
    name = "marketplace.listings"
    label = "listings"

    def ready(self) -> None:
        from marketplace.listings import receivers

        receivers.connect()
