"""Signals the payments app listens to (slash and reward). Sent only after the transaction that
decided them commits."""

from django.dispatch import Signal

# A verification job was rejected or expired. kwargs: machine_id, job_id, report_hash (0x hex of
# 32 bytes), reason (short code), order_id (the lease being re-verified, or None).
machine_verification_failed = Signal()

# A verification job passed. kwargs: machine_id, job_id, report_hash.
machine_verification_passed = Signal()
