"""The Mastodon client API's vocabulary, as pure functions.

Everything here turns homefeed's own values into what Mastodon apps expect (entities,
HTML content, Link headers, scopes) or turns what those apps send into plain values
(parameters, PKCE verifiers). No I/O and no imports from adapters or entrypoints, so the
route modules, the record store and the tests can all use it without pulling anything in.
"""
