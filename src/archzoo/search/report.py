"""The search report: ``report.md``, ``best_so_far.png``, ``pareto.png`` and ``best.json`` in the
search folder, all from the store alone (so any worker, or a later ``archzoo search --report``,
can write it)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from ..checkpoint import atomic_write, atomic_write_text


def pareto_front(points: list[dict], maximize: str = "accuracy", minimize: tuple[str, ...] = ("latency_ms",)) -> list[int]:
    """Indices of the points no other point dominates (at least as good in every objective,
    better in one): higher ``maximize``, lower each of ``minimize``."""

    def key(p):
        return (-p[maximize], *(p[m] for m in minimize))

    front = []
    for i, p in enumerate(points):
        kp = key(p)
        if not any(all(a <= b for a, b in zip(key(q), kp)) and key(q) != kp for j, q in enumerate(points) if j != i):
            front.append(i)
    return front


def best_so_far(scores: list[float | None]) -> list[float | None]:
    out, best = [], None
    for s in scores:
        if s is not None and (best is None or s > best):
            best = s
        out.append(best)
    return out


def train_command(genotype: dict, data: str) -> str:
    """The ``archzoo train`` command that trains an architecture for real."""
    kwargs = [f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in genotype["kwargs"].items()]
    return shlex.join(["archzoo", "train", genotype["model"], "--data", data, "--model-kwargs", *kwargs])


def _rows(store, space) -> list[dict]:
    rows = []
    for t in store.done():
        m = dict(t.user_attrs.get("metrics") or {})
        decisions = list(t.user_attrs.get("decisions") or [])
        rows.append({"slot": t.user_attrs["slot"], "trial": t.number, "state": t.state.name,
                     "score": t.value if t.state.name == "COMPLETE" else None, **m,
                     "meta": t.user_attrs.get("meta") or {}, "error": t.user_attrs.get("error"),
                     "genotype": space.genotype(decisions) if decisions else None})
    return rows


def _plot(path: Path, draw) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(plt)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)


def write_report(store, space, out: Path, multi_objective: bool = False, top: int = 5) -> dict:
    out = Path(out)
    rows = _rows(store, space)
    config = store.study.user_attrs.get("config", {})
    data = config.get("objective", {}).get("data", "DATA")
    scored = [r for r in rows if r["score"] is not None]
    curve = best_so_far([r["score"] for r in rows])

    def draw_curve(plt):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        xs = [r["slot"] + 1 for r in rows]
        ax.scatter([r["slot"] + 1 for r in scored], [r["score"] for r in scored], s=12, alpha=0.5, label="trial")
        ax.step(xs, [c if c is not None else float("nan") for c in curve], where="post", color="C3", label="best so far")
        ax.set_xlabel("trials")
        ax.set_ylabel("score (MnasNet reward)" if multi_objective else "proxy accuracy")
        ax.set_title(f"{config.get('strategy', {}).get('strategy', '')} search over {space.name}")
        ax.legend(loc="lower right")
        return fig

    trained = [r for r in scored if "accuracy" in r and "latency_ms" in r]
    front_lat = [trained[i] for i in pareto_front(trained, minimize=("latency_ms",))]
    front_par = [trained[i] for i in pareto_front(trained, minimize=("params",))]

    def draw_pareto(plt):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for ax, key, front, label in ((axes[0], "latency_ms", front_lat, "CPU latency, batch 1 (ms)"),
                                      (axes[1], "params", front_par, "parameters")):
            ax.scatter([r[key] for r in trained], [r["accuracy"] for r in trained], s=12, alpha=0.5)
            f = sorted(front, key=lambda r: r[key])
            ax.plot([r[key] for r in f], [r["accuracy"] for r in f], "o-", color="C3", label="Pareto front")
            ax.set_xlabel(label)
            ax.set_ylabel("proxy accuracy")
            ax.legend(loc="lower right")
        return fig

    pictures = []
    if rows:
        _plot(out / "best_so_far.png", draw_curve)
        pictures.append("best_so_far.png")
    if trained:
        _plot(out / "pareto.png", draw_pareto)
        pictures.append("pareto.png")
    best = sorted(scored, key=lambda r: (-r["score"], r["slot"]))[:top]
    atomic_write_text(out / "best.json", json.dumps(best, indent=1) + "\n")
    lines = [f"# Architecture search: {space.name} space, {config.get('strategy', {}).get('strategy')} strategy", "",
             f"{len(rows)} of {store.budget} trials done ({len(scored)} scored, "
             f"{sum(r['state'] == 'PRUNED' for r in rows)} infeasible, {sum(r['error'] is not None for r in rows)} failed); "
             f"seed {config.get('seed')}; store `{store.url}`.", "",
             f"Settings: `{json.dumps(config, separators=(',', ':'))}`", ""]
    lines += [f"![{p}]({p})" for p in pictures] + [""]
    lines += ["## Best architectures", "",
              "| rank | trial | score | accuracy | params | MACs | latency (ms) | tricks |", "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(best, 1):
        lines.append(f"| {i} | {r['slot']} | {r['score']:.4f} | {r.get('accuracy', float('nan')):.4f} | {r.get('params', 0):,} "
                     f"| {r.get('macs', 0):,} | {r.get('latency_ms', float('nan')):.2f} | {', '.join(r['genotype']['tricks'])} |")
    for i, r in enumerate(best, 1):
        lines += ["", f"### {i}. trial {r['slot']}", "", "```json", json.dumps(r["genotype"]["kwargs"]), "```", "",
                  "Train it: `" + train_command(r["genotype"], data) + "`"]
    if trained:
        lines += ["", "## Pareto front (accuracy vs latency)", "", "| trial | accuracy | latency (ms) | params |",
                  "|---|---|---|---|"]
        lines += [f"| {r['slot']} | {r['accuracy']:.4f} | {r['latency_ms']:.2f} | {r['params']:,} |"
                  for r in sorted(front_lat, key=lambda r: r["latency_ms"])]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    return {"best": best[0] if best else None, "pictures": pictures, "pareto_latency": [r["slot"] for r in front_lat]}
