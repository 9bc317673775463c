"""``homefeed webhooks add|list|remove|rotate-secret``: webhook subscriptions, managed in the
system of record, so they work while the service runs and in both profiles (the data dir's
SQLite file, or ``HOMEFEED_DATABASE_URL``), and take effect for events committed after
the command returns. The admin route ``POST /admin/webhooks-<action>`` does the same.

Output is for scripts: ``add`` and ``rotate-secret`` print ONE JSON object on stdout
(``{"id", "url", "events", "secret"}``: the secret is shown only there), ``list`` one JSON
object per line, ``remove`` nothing; errors go to stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from homefeed.config import Settings
from homefeed.domain.errors import HomefeedError, Unavailable
from homefeed.domain.webhooks import EVENT_TYPES

ACTIONS = ("add", "list", "remove", "rotate-secret")


def register(subparsers: Any) -> list[argparse.ArgumentParser]:
    """Add ``webhooks`` and its actions to ``homefeed``'s parser; returns the parsers that
    take ``--debug``."""
    w = subparsers.add_parser(
        "webhooks", help="manage webhook subscriptions (signed POSTs of events to a URL)",
        description="Webhook subscriptions: each gets the events it names, committed after it was"
                    " added, as Standard Webhooks POSTs (webhook-id, webhook-timestamp,"
                    " webhook-signature) signed with its secret. Works while the service runs. Embedded"
                    " profile: --data-dir (its SQLite file must exist); scale-out: HOMEFEED_DATABASE_URL.")
    sub = w.add_subparsers(dest="webhooks_action", required=True, metavar="ACTION")
    parsers = [w]

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                       help="embedded profile: the service's data dir (HOMEFEED_DATA_DIR, default ./data)")
        parsers.append(p)

    add = sub.add_parser("add", help="subscribe URL to events; prints {id, url, events, secret}")
    add.add_argument("url", help="http:// or https:// URL (loopback and private addresses are refused"
                                 " unless HOMEFEED_WEBHOOKS_ALLOW_PRIVATE=1)")
    add.add_argument("--events", required=True, metavar="A,B",
                     help="comma-separated: " + ", ".join(EVENT_TYPES))
    data_dir(add)
    data_dir(sub.add_parser("list", help="one JSON object per subscription and line (no secrets)"))
    remove = sub.add_parser("remove", help="delete a subscription (its pending deliveries too)")
    remove.add_argument("id")
    data_dir(remove)
    rotate = sub.add_parser("rotate-secret", help="new secret; the old one keeps signing for 24 h")
    rotate.add_argument("id")
    data_dir(rotate)
    return parsers


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    return asyncio.run(run_async(args, settings, out or sys.stdout))


async def run_async(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from homefeed.bootstrap import build, webhook_store
    from homefeed.service_layer.webhooks import WebhookAdmin

    action = args.webhooks_action
    try:
        hf = build(settings, node=0)  # makes no ids: subscriptions are numbered by the database
        await hf.start(consumers=())
    except (Unavailable, OSError) as exc:
        print(f"homefeed webhooks {action}: {exc}", file=sys.stderr)
        return 2
    try:
        admin = WebhookAdmin(webhook_store(hf), settings.webhooks_allow_private)
        if action == "add":
            print(json.dumps(await admin.add(args.url, args.events)), file=out, flush=True)
        elif action == "list":
            for sub in await admin.list():
                print(json.dumps(sub), file=out)
        elif action == "remove":
            await admin.remove(args.id)
        elif action == "rotate-secret":
            print(json.dumps(await admin.rotate_secret(args.id)), file=out, flush=True)
        return 0
    except HomefeedError as exc:
        print(f"homefeed webhooks {action}: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await hf.close()
