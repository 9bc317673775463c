"""The pages for people at ``/`` and ``/docs``: what this server is, and the OpenAPI
document (``entrypoints/openapi.py``) rendered as HTML.

Rendered on the server, from the same document ``/openapi.json`` serves, so the two cannot
disagree; no script and no CDN (the page works offline, behind a strict CSP, and costs one
request). The page skeletons are HTML files in ``entrypoints/pages/`` (shipped as package
data); each page is rendered once per process and settings, then served from memory.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from importlib.resources import files
from string import Template
from typing import Any

from homefeed import __version__
from homefeed.entrypoints.dashboard import csp

_METHODS = ("get", "post", "put", "patch", "delete")


@lru_cache(maxsize=8)
def page_csp(page: str) -> str:
    """The Content-Security-Policy of a page of ours: its ``<style>`` element allowed by
    its digest, no script, nothing from elsewhere (``dashboard.csp``)."""
    return csp(re.findall(r"<style>(.*?)</style>", page, flags=re.S))


def _template(name: str) -> Template:
    return Template(files("homefeed.entrypoints").joinpath("pages", name).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def index_page() -> str:
    """``/``: what this is, and where to go next."""
    return _template("index.html").substitute(version=html.escape(__version__))


def _e(value: object) -> str:
    return html.escape(str(value))


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref``s to components other than schemas (parameters, headers), which are
    shown inline; schema references stay links."""
    while "$ref" in node and not node["$ref"].startswith("#/components/schemas/"):
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def schema_text(schema: dict[str, Any]) -> str:
    """A schema in one line of HTML: its type and constraints, references as links."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f'<a href="#schema-{_e(name)}">{_e(name)}</a>'
    if "oneOf" in schema:
        return " or ".join(schema_text(s) for s in schema["oneOf"])
    if "const" in schema:
        return f"<code>{_e(repr(schema['const']) if not isinstance(schema['const'], str) else schema['const'])}</code>"
    if "enum" in schema:
        return "one of " + ", ".join(f"<code>{_e(v)}</code>" for v in schema["enum"])
    kind = schema.get("type", "any")
    parts = [_e(kind)]
    if kind == "array" and "items" in schema:
        parts = [f"array of {schema_text(schema['items'])}"]
    if "format" in schema:
        parts.append(_e(schema["format"]))
    low, high = schema.get("minLength", schema.get("minimum")), schema.get("maxLength", schema.get("maximum"))
    unit = " characters" if kind == "string" else ""
    if low is not None and high is not None:
        parts.append(f"{_e(low)}-{_e(high)}{unit}")
    elif low is not None:
        parts.append(f"at least {_e(low)}{unit}")
    elif high is not None:
        parts.append(f"at most {_e(high)}{unit}")
    if "maxItems" in schema:
        parts.append(f"at most {_e(schema['maxItems'])} items")
    if "pattern" in schema:
        parts.append(f"matching <code>{_e(schema['pattern'])}</code>")
    if "default" in schema:
        parts.append(f"default <code>{_e(schema['default'])}</code>")
    return ", ".join(parts)


def _properties_table(schema: dict[str, Any]) -> str:
    props: dict[str, Any] = schema.get("properties", {})
    if not props:
        return ""
    required = set(schema.get("required", ()))
    rows = "".join(
        f"<tr><td><code>{_e(name)}</code>{' <span class=muted>(required)</span>' if name in required else ''}"
        f"</td><td>{schema_text(prop)}</td><td>{_e(prop.get('description', ''))}</td></tr>"
        for name, prop in props.items()
    )
    return f"<table><tr><th>field</th><th>type</th><th>notes</th></tr>{rows}</table>"


def _body_schema(doc: dict[str, Any], body: dict[str, Any]) -> str:
    """A request body: a link to a named schema, or its fields inline."""
    content = body["content"]
    media = "application/json" if "application/json" in content else next(iter(content))
    kind = "JSON body" if media == "application/json" else f"Body ({media})"
    schema = content[media]["schema"]
    if "$ref" in schema:
        return f"<p>{kind}: {schema_text(schema)}</p>"
    return f"<p>{kind}:</p>" + _properties_table(schema)


def _operation(doc: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> str:
    out = [f'<div class="op" id="op-{_e(op["operationId"])}">',
           f'<h3><span class="method {method}">{method.upper()}</span> <span class="path">{_e(path)}</span></h3>',
           f"<p>{_e(op.get('summary', ''))}"]
    if op.get("security"):
        scheme = next(iter(op["security"][0]))
        what = doc["components"]["securitySchemes"][scheme].get("description", scheme)
        out.append(f" <span class=muted>(needs <code>Authorization: Bearer &lt;token&gt;</code>: {_e(what)})</span>")
    out.append("</p>")
    params = [_resolve(doc, p) for p in op.get("parameters", [])]
    if params:
        rows = "".join(
            f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}"
            f"{', required' if p.get('required') else ''}</td><td>{schema_text(p.get('schema', {}))}</td>"
            f"<td>{_e(p.get('description', ''))}</td></tr>"
            for p in params
        )
        out.append(f"<table><tr><th>parameter</th><th>in</th><th>type</th><th>notes</th></tr>{rows}</table>")
    if "requestBody" in op:
        out.append(_body_schema(doc, op["requestBody"]))
    answers: list[str] = []
    for status, response in op["responses"].items():
        content = response.get("content", {})
        shown = ", ".join(f"{schema_text(c['schema'])} <span class=muted>({_e(media)})</span>"
                          for media, c in content.items())
        answers.append(f"<tr><td>{_e(status)}</td><td>{_e(response.get('description', ''))}</td><td>{shown}</td></tr>")
    out.append(f"<table><tr><th>status</th><th>meaning</th><th>body</th></tr>{''.join(answers)}</table>")
    out.append("</div>")
    return "".join(out)


def render_docs_body(doc: dict[str, Any]) -> str:
    """Contents, the operations path by path, then every named schema."""
    ops = [(path, method, op) for path, item in doc["paths"].items()
           for method, op in item.items() if method in _METHODS]
    toc = "".join(
        f'<li><a href="#op-{_e(op["operationId"])}"><span class="method {m}">{m.upper()}</span> {_e(path)}</a></li>'
        for path, m, op in ops
    )
    parts = [f"<nav><h2>Operations</h2><ul>{toc}</ul></nav>"]
    parts.extend(_operation(doc, path, m, op) for path, m, op in ops)
    parts.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        parts.append(f'<h3 id="schema-{_e(name)}">{_e(name)}</h3>')
        if schema.get("description"):
            parts.append(f"<p>{_e(schema['description'])}</p>")
        parts.append(_properties_table(schema) or f"<p>{schema_text(schema)}</p>")
    return "\n".join(parts)


def docs_page(doc: dict[str, Any]) -> str:
    """``/docs``: the whole document as one page."""
    return _template("docs.html").substitute(
        version=_e(doc["info"]["version"]),
        description=_e(doc["info"].get("description", "")),
        body=render_docs_body(doc),
    )
