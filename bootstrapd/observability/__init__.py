"""Logging and metrics: the only places that know structlog and prometheus_client."""
