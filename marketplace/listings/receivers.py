"""Keeps search current when rows it shows change outside the listings services.

Orders and benchmark jobs live in apps above listings, which must not import them; their model
signals are connected here by "app_label.Model" name instead (Django resolves it when the apps are
ready). They run inside the writer's transaction: the verified figure commits with the verdict
that produced it, and the cache generation is bumped again once the write commits."""

from django.db.models.signals import post_delete, post_save

from marketplace.listings import search_cache, services
from marketplace.listings.models import Listing, ReservedPrice

VERIFIED = "verified"


def _changed(update_fields, *names: str) -> bool:
    return update_fields is None or any(name in update_fields for name in names)


def search_rows_changed(sender, **kwargs) -> None:
    """A listing, its reserved prices, or an order (which takes and releases capacity) changed:
    free_accelerators and what search finds may differ now."""
    search_cache.invalidate_on_commit()


def benchmark_job_saved(sender, instance, update_fields=None, **kwargs) -> None:
    """A matmul job that reached `verified` gives the machine's listings their figures per
    precision again (each verified device's newest job, summed, as for verified_tflops)."""
    if not _changed(update_fields, "state") or instance.state != VERIFIED:
        return
    if instance.kind != "matmul" or not instance.measured_tflops:
        return
    services.listing_record_precision_tflops(machine_id=instance.machine_id)


def connect() -> None:
    for model in (Listing, ReservedPrice, "orders.Order"):
        post_save.connect(search_rows_changed, sender=model, dispatch_uid=f"search-{model}-save")
        post_delete.connect(search_rows_changed, sender=model, dispatch_uid=f"search-{model}-del")
    post_save.connect(
        benchmark_job_saved, sender="benchmarks.BenchmarkJob", dispatch_uid="search-job-verified"
    )
