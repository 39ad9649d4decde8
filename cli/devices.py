"""odml devices: where models can run here, and why not for the rest."""

from __future__ import annotations

import typer
from rich.table import Table

from odml.cli.common import handle_errors, out, print_json


@handle_errors
def devices_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the devices odml can benchmark on: the host, Android phones over
    adb, the Edge TPU."""
    from odml.devices.device import list_devices

    rows = list_devices()
    if json_out:
        print_json({"devices": rows})
        return
    t = Table(title="odml devices")
    for col in ("device", "available", "details"):
        t.add_column(col)
    for r in rows:
        details = r.get("reason") or ", ".join(f"{k} {v}" for k, v in r.items()
                                               if k not in ("device", "available") and v not in (None, ""))
        t.add_row(r["device"], "yes" if r["available"] else "no", details)
    out.print(t)
