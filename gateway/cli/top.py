"""`prefixgate top`: a live terminal view of a running gateway, polled from its /metrics.

/metrics is served to the admin token only; the token comes from `--admin-token`,
`PREFIXGATE_ADMIN_TOKEN`, or the file `prefixgate serve` wrote under its data directory.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import click
from rich.console import Console
from rich.live import Live
from rich.text import Text

from gateway.cli.top_view import Snapshot, render
from gateway.settings import ADMIN_TOKEN_FILE, Settings


class ScrapeError(Exception):
    """The gateway could not be read (unreachable, or it refused the token)."""


def fetch(url: str, token: str, timeout_s: float = 5.0) -> Snapshot:
    """One GET /metrics, parsed."""
    req = urllib.request.Request(
        url.rstrip("/") + "/metrics", headers={"authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            body = resp.read().decode()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise ScrapeError(f"the gateway refused the admin token (HTTP {exc.code})") from None
        raise ScrapeError(f"GET /metrics answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ScrapeError(f"cannot reach {url}: {reason}") from None
    return Snapshot.parse(body, time.monotonic())


def stored_admin_token() -> str | None:
    path = Settings.from_env().data_dir / ADMIN_TOKEN_FILE
    return path.read_text().strip() if path.is_file() else None


@click.command("top")
@click.option("--url", default="http://127.0.0.1:8000", envvar="PREFIXGATE_URL",
              show_default=True, help="The gateway's base URL.")
@click.option("--admin-token", envvar="PREFIXGATE_ADMIN_TOKEN",
              help="Admin token [default: the one `prefixgate serve` stored in its data dir].")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="Seconds between polls.")
@click.option("--once", is_flag=True, help="Print one frame and exit (no rates).")
def cli(url: str, admin_token: str | None, interval: float, once: bool) -> None:
    """Live view of a gateway: traffic, cache hits, KV cache, queue, rejections, tenants."""
    token = admin_token or stored_admin_token()
    if not token:
        raise click.UsageError("no admin token: pass --admin-token or set PREFIXGATE_ADMIN_TOKEN")
    console = Console()
    try:
        first = fetch(url, token)
    except ScrapeError as exc:
        raise click.ClickException(str(exc)) from None
    if once:
        console.print(render(first, None, url))
        return
    before = first
    with Live(render(first, None, url), console=console, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                try:
                    now = fetch(url, token)
                except ScrapeError as exc:
                    live.update(Text(f"{exc} — retrying every {interval:g} s", style="red"),
                                refresh=True)
                    continue
                live.update(render(now, before, url), refresh=True)
                before = now
        except KeyboardInterrupt:
            return
