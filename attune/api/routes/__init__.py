"""The API's routers, one per resource, all mounted under :data:`PREFIX`."""

PREFIX = "/api/v1"
"""Where every route of the API lives."""
