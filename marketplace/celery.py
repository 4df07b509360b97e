import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

app = Celery("marketplace")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Task modules by concern; beat and workers import all of them.
app.conf.imports = [
    "workers.tasks",
    "workers.benchmark_tasks",
    "workers.chain_tasks",
    "workers.collateral_tasks",
    "workers.ops_tasks",
    "workers.dashboard_tasks",
    "marketplace.workloads.tasks",
    "marketplace.webhooks.tasks",
]
