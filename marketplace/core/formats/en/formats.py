# Operators compare admin times with logs and the chain, and billing is per second: every
# datetime the admin shows (list columns, read-only fields) is ISO-like, UTC, to the second.
# Input formats are Django's defaults; only what is displayed changes.
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
