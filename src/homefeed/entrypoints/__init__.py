"""Entrypoints: HTTP API and command line."""
