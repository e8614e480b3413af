"""``archzoo lineage [--task T] [--json] [--plot FILE.png]``: the zoo as a family tree of ideas."""

from __future__ import annotations

from ..lineage import lineage, plot_lineage
from .common import console, print_json


def register(sub) -> None:
    p = sub.add_parser("lineage", help="timeline of the zoo: where each trick came from and who reused it")
    p.add_argument("--task", choices=["classification", "detection", "segmentation"])
    p.add_argument("--models", action="store_true", help="one line per model instead of per family")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the tree of ideas to this image")
    p.set_defaults(func=run)


def run(args) -> int:
    data = lineage(args.task)
    if args.plot:
        plot_lineage(args.plot, args.task)
    if args.json:
        print_json(data)
        return 0
    out = console()
    out.print("[bold]Tricks[/bold], in the order they entered the zoo")
    for r in data["tricks"]:
        first = ", ".join(r["first_in_zoo"][:4]) + (" ..." if len(r["first_in_zoo"]) > 4 else "")
        reused = len(r["reused_by"])
        origin = f"{r['origin_paper']} ({r['origin_year']})"
        out.print(f"  {r['first_year']}  [cyan]{r['trick']}[/cyan]: first in {first}; reused by {reused} later "
                  f"model{'s' if reused != 1 else ''}.  Origin: {origin}", highlight=False)
    rows = data["models"] if args.models else data["families"]
    key = "model" if args.models else "family"
    out.print(f"\n[bold]{'Models' if args.models else 'Families'}[/bold], and what each added over those before it")
    for r in rows:
        added = ", ".join(r["added"]) or "nothing new: a new combination of earlier tricks"
        inherited = ", ".join(f"{t} ({src})" for t, src in r["inherited"].items())
        out.print(f"  {r['year']}  [bold]{r[key]}[/bold]  adds: {added}", highlight=False)
        if inherited:
            out.print(f"        reuses: {inherited}", highlight=False)
    if args.plot:
        out.print(f"\npicture written to {args.plot}")
    return 0
