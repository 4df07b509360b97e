"""gunicorn settings that belong to the application rather than to one deployment (workers,
threads and the bind address stay on the command line: Procfile, scripts/demo.py)."""

# gunicorn's default request-line limit (4,094 bytes) answers a longer URL with its own HTML 414
# before Django sees it; a search with many filters reaches 6-8 KB of query string. 8,190 is the
# most gunicorn allows. A longer line still gets gunicorn's 414: nothing under /api/ needs one.
limit_request_line = 8190
# One header line (a long Authorization or Cookie) may be as long as the request line.
limit_request_field_size = 8190
# gunicorn's default header count; named so that all three limits are read together.
limit_request_fields = 100
