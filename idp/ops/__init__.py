"""Operations: health and readiness probes, Prometheus metrics, JSON logs with request ids, trusted proxies and
the answers given when PostgreSQL or Redis is unreachable."""
