"""The HTTP routes, one module per resource; ``entrypoints/http.py`` assembles them
(its ``ROUTES``).

Each module holds module-level handlers, ``async def handler(request) -> Response``, and a
``routes`` list of Starlette ``Route``s mapping paths to them. A handler finds the
application with ``_request.service(request)`` (``create_app`` puts it on ``app.state``),
decodes with the helpers of ``_request`` (``read_body``/``parse_json``, ``caller``,
``list_params``, ``idempotency_key``/``once``), calls one use case of the service and
answers ``json_response(...)``. Refusing a request is raising a ``HomefeedError``
(``domain/errors.py``): ``create_app`` turns it into the one error shape.

To add a resource (the Mastodon API will add dozens):

1. write ``routes/<resource>.py`` with its handlers and its ``routes`` list (copy
   ``posts.py``: a keyed write, a read, a delete);
2. add its ``routes`` to ``ROUTES`` in ``entrypoints/http.py``;
3. document every route in ``entrypoints/openapi.py`` (``tests/unit/test_openapi.py``
   fails on an undocumented route), generating limits from the constants validation uses;
4. test it end to end in ``tests/e2e/``; bad input in ``test_bad_input.py``.

This package imports none of its modules, so that a module (``openapi.py``, say) can
import one of them without importing them all.

Keep rules out of handlers: validation and every decision belong to the service layer, so
every entrypoint gets the same ones.
"""

