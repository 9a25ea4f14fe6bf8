"""The schema and the engine: typed models, the Database wrapper and portable SQL types."""
