"""The Mastodon client API: one module per area (routes), over the same service layer."""
