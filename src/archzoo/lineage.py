"""The zoo as a family tree of ideas.

For every trick: the paper that introduced it, the first model in the zoo that used it, and every
later model that reuses it. For every model: what it added over the models before it (tricks no
earlier model used) and what it inherited (and from whom). "Earlier" means an earlier year; models
of the same year are contemporaries and do not inherit from each other, except that where some of
them come from the trick's own paper (its arXiv id), those introduce it and the others inherit it.

Reference ports sometimes give an old network a newer idea (torchvision's GoogLeNet and the
``vgg*_bn`` variants have batch norm, which appeared in 2015). Such a use, by a model older than
the trick's paper, is listed as *retrofitted*: it neither introduces the trick into the zoo nor
counts as inheriting it.

Everything here is derived from the model cards and :mod:`archzoo.tricks`; nothing is typed in.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from .registry import list_models, model_card
from .tricks import get_trick


def _arxiv_ids(text: str) -> set[str]:
    return set(re.findall(r"arXiv:(\d{4}\.\d{4,5})", text))


@dataclass(frozen=True)
class FamilyNode:
    family: str
    year: int
    models: tuple[str, ...]
    tricks: tuple[str, ...]  # union over the family's models, in first-seen order


def families(task: str | None = None) -> list[FamilyNode]:
    """Families ordered by year (then name), each with its models and the union of their tricks."""
    by_family: dict[str, list] = defaultdict(list)
    for name in list_models(task=task):
        by_family[model_card(name).family].append(model_card(name))
    nodes = []
    for fam, cards in by_family.items():
        tricks = tuple(dict.fromkeys(t for c in cards for t in c.tricks))
        nodes.append(FamilyNode(fam, min(c.year for c in cards), tuple(c.name for c in cards), tricks))
    return sorted(nodes, key=lambda n: (n.year, n.family))


def lineage(task: str | None = None) -> dict:
    """``{"tricks": [...], "models": [...], "families": [...]}`` (see the module docstring)."""
    names = sorted(list_models(task=task), key=lambda n: (model_card(n).year, n))
    cards = [model_card(n) for n in names]

    users: dict[str, list] = defaultdict(list)  # trick -> cards using it, by year
    for card in cards:
        for t in card.tricks:
            users[t].append(card)

    tricks = []
    for t, using in users.items():
        trick = get_trick(t)
        native = [c for c in using if c.year >= trick.year] or using
        first_year = native[0].year
        # among contemporaries, the models of the trick's own paper introduce it, where the zoo has them
        # (a 2017 segmenter on a 2017 backbone inherits the backbone's idea rather than sharing its credit)
        origin = _arxiv_ids(trick.paper)
        introducers = [c for c in native if c.year == first_year]
        introducers = [c for c in introducers if origin & _arxiv_ids(c.paper)] or introducers
        tricks.append({
            "trick": t,
            "definition": trick.definition,
            "origin_paper": trick.paper,
            "origin_year": trick.year,
            "first_in_zoo": [c.name for c in introducers],
            "first_family": introducers[0].family,
            "first_year": first_year,
            "reused_by": [c.name for c in using if c.year >= first_year and c not in introducers],
            "retrofitted_in": [c.name for c in using if c.year < first_year],
        })
    tricks.sort(key=lambda r: (r["first_year"], r["origin_year"], r["trick"]))
    first = {r["trick"]: r for r in tricks}

    def split(year: int, used: tuple[str, ...], names) -> dict:
        added = [t for t in used if first[t]["first_year"] == year and set(names) & set(first[t]["first_in_zoo"])]
        return {
            "added": added,
            "inherited": {t: first[t]["first_family"] for t in used
                          if first[t]["first_year"] <= year and t not in added},
            "retrofitted": [t for t in used if first[t]["first_year"] > year],
        }

    models = [{"model": c.name, "family": c.family, "year": c.year, **split(c.year, c.tricks, [c.name])} for c in cards]
    fams = [{"family": n.family, "year": n.year, "models": list(n.models), **split(n.year, n.tricks, n.models)}
            for n in families(task)]
    return {"tricks": tricks, "models": models, "families": fams}


def plot_lineage(path: str, task: str | None = None) -> None:
    """Draw the tree of ideas: families left to right by year, tricks top to bottom by first use.

    A star marks the family that brought a trick into the zoo, a dot each family that reuses it,
    a hollow circle a retrofitted use (an older network given the idea by a reference port), and a
    line joins a trick's first and last use, so long lines are the ideas that lasted.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = lineage(task)
    fams = data["families"]
    trick_rows = [r["trick"] for r in data["tricks"]]
    col = {f["family"]: i for i, f in enumerate(fams)}
    row = {t: i for i, t in enumerate(trick_rows)}
    uses = {f["family"]: set(f["added"]) | set(f["inherited"]) | set(f["retrofitted"]) for f in fams}

    width = max(8.0, 0.62 * len(fams) + 4.5)
    height = max(5.0, 0.32 * len(trick_rows) + 2.2)
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    cmap = plt.get_cmap("tab20")
    for t in trick_rows:
        cols = [col[f["family"]] for f in fams if t in uses[f["family"]]]
        y = row[t]
        color = cmap(y % 20)
        ax.plot([min(cols), max(cols)], [y, y], color=color, lw=1.2, alpha=0.5, zorder=1)
        for f in fams:
            x = col[f["family"]]
            if t in f["added"]:
                ax.scatter(x, y, s=130, marker="*", color=color, edgecolor="black", linewidth=0.5, zorder=2)
            elif t in f["inherited"]:
                ax.scatter(x, y, s=36, marker="o", color=color, zorder=2)
            elif t in f["retrofitted"]:
                ax.scatter(x, y, s=36, marker="o", facecolor="white", edgecolor=color, linewidth=1.2, zorder=2)
    ax.set_xticks(range(len(fams)))
    ax.set_xticklabels([f"{f['family']}\n{f['year']}" for f in fams], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(trick_rows)))
    ax.set_yticklabels(trick_rows, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-0.7, len(fams) - 0.3)
    ax.grid(axis="x", color="0.92", zorder=0)
    ax.set_title("archzoo lineage: where each idea entered the zoo (star), who reused it (dot), "
                 "retrofitted by a reference port (hollow)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
