"""The renter's command line: search, order, fund, run, logs, stop, receipt (no Django)."""
