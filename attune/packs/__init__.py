"""Packs: safe YAML documents, pack and action specs, the loader and its upsert."""
