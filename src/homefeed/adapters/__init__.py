"""Adapters: one per backend for each port in homefeed.ports."""
