"""The HTTP API: :func:`create_app` builds the FastAPI app for any ASGI server.

Importing this package does nothing but import; the database and broker are reached only
when the app serves requests.
"""

from attune.api.app import create_app

__all__ = ["create_app"]
