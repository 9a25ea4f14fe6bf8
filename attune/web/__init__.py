"""The operator web UI: server-rendered pages over the same data functions as the API.

Mounted by :func:`attune.api.create_app` at ``/``; one small script (``static/attune.js``)
follows the API's event streams with the browser's ``EventSource``. Nothing is loaded from
anywhere but this server.
"""
