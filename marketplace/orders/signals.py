"""Signals other apps listen to. Sent only after the transaction that caused them commits, so a
listener (e.g. payments enqueueing a settlement) never sees a state that was rolled back."""

from django.dispatch import Signal

# A lease reached completed, cancelled or failed: its escrow is due for settlement.
# kwargs: order_id
order_ended = Signal()
