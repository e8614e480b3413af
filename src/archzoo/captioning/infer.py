"""``archzoo predict`` and ``archzoo eval`` for captioners: captions of image files, with the
attention of every word drawn over the image; the beam width of decoding."""

from __future__ import annotations

from pathlib import Path


def set_beam(model, beam: int | None) -> None:
    """Decode with beam search of width ``beam`` (1: greedy); only a captioner has a beam."""
    from ..validate import UserError

    if beam is None:
        return
    if getattr(getattr(model, "card", None), "task", None) != "captioning":
        raise UserError(f"--beam is for captioners; {getattr(model.card, 'name', 'the model')} is a "
                        f"{model.card.task} model")
    if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
        raise UserError(f"--beam: the beam width is a whole number >= 1, got {beam!r}")
    model.beam_size = beam


def predict_captions(model, meta: dict, files: list[str], device, out: str | Path | None = None,
                     beam: int | None = None) -> list[dict]:
    """``[{"file", "caption", "words", "log_prob"}]`` per image file; with ``out``, also
    ``out/<name>.attention.png`` (the image, then each word's attention over it: ``"picture"``)
    and ``out/<name>.txt`` (the caption: ``"text"``)."""
    from ..cli.common import checkpoint_input, output_names
    from ..data.folder import ImageDecoder
    from ..engine.evaluate import model_task
    from ..validate import check_writable_dir, shown
    from .render import attention_figure

    set_beam(model, beam)
    c, size, mean, std = checkpoint_input(model, meta)
    task = model_task(model, meta.get("class_names"))
    if out is not None:
        out = check_writable_dir(out, "--out")
        out.mkdir(parents=True, exist_ok=True)
    tf, decode = task.input_transform(size, mean, std, c), ImageDecoder(c)
    model = model.to(device).eval()
    results = []
    for f, name in zip(files, output_names(files, "")):
        image = decode(f)
        r = task.predict(model, tf(image)[None].to(device), tuple(image.shape[-2:]), 1)
        attention = r.pop("attention")
        entry = {"file": shown(f), **r}
        if out is not None:
            shown_image = ImageDecoder(3)(f)
            entry["picture"] = shown(attention_figure(shown_image, r["words"], attention, out / f"{name}.attention.png"))
            (out / f"{name}.txt").write_text(r["caption"] + "\n", encoding="utf-8")
            entry["text"] = shown(out / f"{name}.txt")
        results.append(entry)
    return results


def predict_command(args, model, meta: dict) -> int:
    """``archzoo predict`` of a captioner: a table (or ``--json``) of the captions; ``--out DIR``
    the attention pictures. Flags of other tasks are refused."""
    from ..cli.common import print_json, print_table
    from ..validate import UserError, shown

    set_beam(model, args.beam)
    for flag, given in (("--topk", args.topk is not None), ("--score-threshold", args.score_threshold is not None),
                        ("--tile", args.tile is not None), ("--crf", args.crf), ("--tta", args.tta != "none")):
        if given:
            raise UserError(f"{flag} is not for captioners; {meta.get('model')} writes a caption per image")
    preds = predict_captions(model, meta, args.images, args.device, out=args.out)
    if args.json:
        print_json({"checkpoint": shown(args.checkpoint), "model": meta.get("model"), "predictions": preds})
        return 0
    rows = [[p["file"], p["caption"], f"{p['log_prob']:.2f}", p.get("picture", "")] for p in preds]
    print_table(f"{meta.get('model')} captions", ["image", "caption", "log-prob", "attention picture"], rows,
                justify_right={"log-prob"})
    return 0
