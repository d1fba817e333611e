"""Operations: health probes, Prometheus metrics, request logging, a `planfit serve` child process (see the modules).

Kept free of imports: `server.ops.logging` is loaded by every uvicorn worker process before it answers
its supervisor's first health check, so it must not pull in the web framework.
"""
