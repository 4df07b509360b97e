"""Sending the payments app's Celery tasks (workers/chain_tasks.py) by name."""

from __future__ import annotations


def task_enqueue(task_name: str, *args) -> None:
    # Imported late: workers.chain_tasks imports the services that call this.
    from workers import chain_tasks

    getattr(chain_tasks, task_name).delay(*args)
