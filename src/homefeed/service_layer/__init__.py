"""Service layer: use cases and timeline rules, coded against homefeed.ports only."""
