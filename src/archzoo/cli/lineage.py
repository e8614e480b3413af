"""``archzoo lineage [--task T] [--json] [--plot FILE.png]``: the zoo as a family tree of ideas."""

from __future__ import annotations

from ..lineage import lineage, plot_lineage
from ..registry import model_card
from .common import console, print_json


def register(sub) -> None:
    p = sub.add_parser("lineage", help="timeline of the zoo: where each trick came from and who reused it")
    p.add_argument("--task", choices=["classification", "detection", "segmentation"])
    p.add_argument("--models", action="store_true", help="one line per model instead of per family")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the tree of ideas to this image")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..validate import check_writable_file, shown

    if args.plot:
        check_writable_file(args.plot, "--plot")
    data = lineage(args.task)
    family_year = {f["family"]: f["year"] for f in data["families"]}
    if args.plot:
        plot_lineage(args.plot, args.task)
    if args.json:
        print_json(data)
        return 0
    out = console()
    out.print("[bold]Tricks[/bold], in the order they entered the zoo")
    for r in data["tricks"]:
        later = sorted({model_card(m).family for m in r["reused_by"]}, key=lambda f: family_year[f])
        line = (f"  {r['first_year']}  [cyan]{r['trick']}[/cyan] — first in {r['first_family']}; "
                f"reused by {len(later)} later famil{'ies' if len(later) != 1 else 'y'}"
                + (f" ({', '.join(later)})" if later else "")
                + f". Origin: {r['origin_paper']}, {r['origin_year']}")
        out.print(line, highlight=False)
    rows = data["models"] if args.models else data["families"]
    key = "model" if args.models else "family"
    out.print(f"\n[bold]{'Models' if args.models else 'Families'}[/bold], and what each added over those before it")
    for r in rows:
        added = ", ".join(r["added"]) or "nothing new: a new combination of earlier tricks"
        inherited = ", ".join(f"{t} ({src})" for t, src in r["inherited"].items())
        out.print(f"  {r['year']}  [bold]{r[key]}[/bold]  adds: {added}", highlight=False)
        if inherited:
            out.print(f"        reuses: {inherited}", highlight=False)
        if r["retrofitted"]:
            out.print(f"        retrofitted by its reference port: {', '.join(r['retrofitted'])}", highlight=False)
    if args.plot:
        out.print(f"\npicture written to {shown(args.plot)}", markup=False, highlight=False)
    return 0
