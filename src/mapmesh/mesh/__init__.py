"""App Mesh configuration: resource kinds, their records, validation and the read model."""
