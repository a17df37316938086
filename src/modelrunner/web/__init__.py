"""The web UI: server-rendered pages over the same services and permissions as the API."""
