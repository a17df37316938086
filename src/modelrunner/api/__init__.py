"""The HTTP API."""

API_PREFIX = "/api/v1"  # where every API route lives: the server mounts it, the web UI's middleware and the CLI know it
