"""Access to the HTTP API: API keys and their scopes."""
