"""Image captioning as an engine task: a sentence for every image.

Batches: normalised images ``[B, C, s, s]`` and ``{"captions": int64 [B, R, T], "novel": [B]}``
(every reference caption of each image, see :mod:`archzoo.data.captions`). Training picks one
reference per image at random each step (:meth:`CaptioningTask.train_batch`) and trains by teacher
forcing: cross-entropy of every next word (``<pad>`` left out) plus the model's doubly stochastic
attention penalty. Validation decodes (greedy, or the model's ``beam_size``) and scores the
sentences against all references: BLEU-1..4 (torchmetrics' ``BLEUScore``, corpus level, uniform
n-gram weights, no smoothing) and exact match (the caption equals one of the references word for
word), also on the images holding a held-out composition (``novel``; ``shapes-cap``'s test split).
Images are never flipped: a mirror would swap "left of" and "right of".
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.captions import PAD, START, decode
from .metrics import GatheredMeter, SumMeter, _zeros
from .task import Task

BLEU_ORDERS = (1, 2, 3, 4)


class _ResizeNormalize:
    """``(uint8 image, target) -> (normalised float32 [C, s, s], target)``, the whole image resized."""

    def __init__(self, size: int, mean, std, in_chans: int):
        self.size, self.in_chans = size, in_chans
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image: torch.Tensor, target: dict):
        x = image.float()[None]
        if x.shape[1] != self.in_chans:
            x = x.mean(1, keepdim=True) if self.in_chans == 1 else x.expand(-1, self.in_chans, -1, -1)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return (x[0] / 255 - self.mean) / self.std, target


class WordMeter(SumMeter):
    """Training: the loss and the share of next words predicted right under teacher forcing."""

    def __init__(self, device):
        super().__init__({"loss": _zeros(device, dtype=torch.float64), "words": _zeros(device),
                          "correct": _zeros(device), "count": _zeros(device)})

    @torch.no_grad()
    def update(self, output, target, loss):
        truth = target["tokens"][:, 1:]
        keep = truth != PAD
        s = self.sums
        s["correct"] += (output.logits.argmax(-1).eq(truth) & keep).sum()
        s["words"] += keep.sum()
        s["loss"] += (loss.detach() * len(truth)).double()
        s["count"] += len(truth)

    def running(self):
        return {"loss": self.sums["loss"] / self.sums["count"].clamp(min=1),
                "word_accuracy": self.sums["correct"] / self.sums["words"].clamp(min=1)}

    def summarize(self, s):
        return {"loss": float(s["loss"]) / max(int(s["count"]), 1),
                "word_accuracy": int(s["correct"]) / max(int(s["words"]), 1), "count": int(s["count"])}


def _words(ids: torch.Tensor) -> tuple[int, ...]:
    """The word ids of a token row: after ``<start>``, up to ``<end>``, without padding."""
    from ..data.captions import END

    out = []
    for i in ids.tolist():
        if i == END:
            break
        if i not in (PAD, START):
            out.append(i)
    return tuple(out)


class CaptionMeter(GatheredMeter):
    """Validation and ``archzoo eval``: decoded captions against every reference (see the module doc)."""

    def __init__(self, vocabulary: list[str]):
        super().__init__()
        self.vocabulary = vocabulary

    @torch.no_grad()
    def update(self, output, target, loss):
        tokens = output.tokens.cpu()
        caps, novel = target["captions"].cpu(), target["novel"].cpu()
        for i in range(len(tokens)):
            self.predictions.append({"tokens": tokens[i]})
            self.targets.append({"captions": caps[i], "novel": novel[i]})

    def score(self, predictions, targets) -> dict:
        from torchmetrics.text import BLEUScore

        words = lambda ids: " ".join(self.vocabulary[i] for i in ids)
        preds, refs, hits, novel = [], [], [], []
        for p, t in zip(predictions, targets):
            mine = _words(p["tokens"])
            theirs = [_words(c) for c in t["captions"] if int(c[0]) == START]
            preds.append(words(mine))
            refs.append([words(r) for r in theirs])
            hits.append(mine in theirs)
            novel.append(bool(t["novel"]))
        out = {f"bleu{n}": float(BLEUScore(n_gram=n)(preds, refs)) if preds else 0.0 for n in BLEU_ORDERS}
        share = lambda sel: sum(h for h, s in zip(hits, sel) if s) / max(sum(sel), 1)
        out["exact_match"] = share([True] * len(hits))
        if any(novel):
            out["novel_exact_match"] = share(novel)
            out["seen_exact_match"] = share([not n for n in novel])
        out.update(count=len(preds), novel_count=sum(novel),
                   examples=[{"caption": p, "references": r} for p, r in zip(preds[:5], refs[:5])])
        return out


class CaptioningTask(Task):
    """Teacher-forced cross-entropy plus the attention penalty; scored by BLEU-4 (module doc).
    ``class_names`` is the vocabulary."""

    name = "captioning"
    monitor, monitor_mode = "bleu4", "max"
    train_fields = ("loss", "word_accuracy")
    val_fields = ("bleu1", "bleu2", "bleu3", "bleu4", "exact_match")
    device_keys = ("captions", "novel")

    # --- batches --------------------------------------------------------------------------------
    def batch_augment(self, train, cfg, input_size, mean, std, in_chans):
        from ..data.gpu import BatchAugment

        jitter = train and cfg.augment == "basic"  # a small random shift (pad and crop); never a flip
        return BatchAugment(input_size, mean, std, pad=cfg.pad if jitter else 0, flip=False, train=jitter,
                            in_chans=in_chans)

    def device_batch(self, augment, images, targets):
        return augment(images), {"captions": targets["captions"], "novel": targets["novel"]}

    def sample_transform(self, train, cfg, input_size, mean, std, in_chans):
        return _ResizeNormalize(input_size, mean, std, in_chans)

    @staticmethod
    def collate(samples):
        return torch.stack([x for x, _ in samples]), {k: torch.stack([t[k] for _, t in samples])
                                                      for k in ("captions", "novel")}

    # --- a step ---------------------------------------------------------------------------------
    def train_batch(self, images, targets):
        caps = targets["captions"]
        present = (caps[:, :, 0] == START).float()
        pick = torch.multinomial(present + 1e-9 * (present.sum(1, keepdim=True) == 0), 1)[:, 0]
        tokens = caps[torch.arange(len(caps), device=caps.device), pick]
        return images, {**targets, "tokens": tokens}

    def forward(self, model, images, targets):
        return model(images, targets["tokens"])

    def loss(self, output, targets):
        truth = targets["tokens"][:, 1:]
        ce = F.cross_entropy(output.logits.float().flatten(0, 1), truth.flatten(), ignore_index=PAD)
        return ce + output.penalty.float()

    def meter(self, device, train):
        return WordMeter(device) if train else CaptionMeter(self.class_names)

    # --- the end of a run, eval and predict ----------------------------------------------------
    def report(self, run_dir, model, metrics, data, preprocess) -> list[Path]:
        from ..captioning.render import caption_grid
        from . import report

        if data is None or not len(data):
            return []
        images, targets = report.first_items(data, 8, preprocess.size)
        with torch.no_grad():
            out = model.eval()(preprocess(images.to(next(model.parameters()).device)))
        said = [decode(t, self.class_names) for t in out.tokens.cpu()]
        truth = [decode(t["captions"][0], self.class_names) for t in targets]
        return [caption_grid(images, said, truth, Path(run_dir) / "captions.png")]

    EVAL_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "exact_match", "novel_exact_match", "seen_exact_match", "count",
                 "novel_count", "examples")

    def eval_result(self, metrics):
        return {k: metrics[k] for k in self.EVAL_KEYS if k in metrics}

    def eval_tables(self, metrics):
        titles = {"bleu1": "BLEU-1", "bleu2": "BLEU-2", "bleu3": "BLEU-3", "bleu4": "BLEU-4"}
        rows = [[title, f"{metrics[k]:.4f}"] for k, title in titles.items()]
        rows.append(["exact match", f"{metrics['exact_match']:.2%}"])
        if "novel_exact_match" in metrics:
            rows += [["exact match, held-out compositions", f"{metrics['novel_exact_match']:.2%} of {metrics['novel_count']}"],
                     ["exact match, seen compositions", f"{metrics['seen_exact_match']:.2%}"]]
        rows.append(["images", metrics["count"]])
        tables = [(None, ["metric", "value"], rows)]
        if metrics.get("examples"):
            tables.append(("examples", ["caption", "first reference"],
                           [[e["caption"], e["references"][0] if e["references"] else ""] for e in metrics["examples"]]))
        return tables

    def input_transform(self, input_size, mean, std, in_chans):
        tf = _ResizeNormalize(input_size, mean, std, in_chans)
        return lambda image: tf(image, {})[0]

    @torch.no_grad()
    def predict(self, model, x, image_size, topk, *, beam_size: int | None = None):
        """``{"caption", "words", "log_prob", "attention"}``: the decoded sentence, its words (``<end>``
        not included), its summed log-probability and the attention of every word, float
        ``[n_words, h, w]`` over the feature map (for the caller to draw; not JSON)."""
        out = model.generate(x, beam_size=beam_size)
        ids = _words(out.tokens[0].cpu())
        h, w = out.grid
        words = [self.class_names[i] for i in ids]
        return {"caption": " ".join(words), "words": words, "log_prob": float(out.log_prob[0]),
                "attention": out.alphas[0, :len(ids)].float().cpu().view(len(ids), h, w)}
