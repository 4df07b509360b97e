"""Celery tasks; thin: each loads by id and calls one service."""
