"""Captioning data: images with one or more captions each, and the vocabulary their words index.

A captioning :class:`~archzoo.data.ImageDataset` (``task="captioning"``) keeps the vocabulary as
its ``class_names``: :data:`SPECIALS` first (``<pad>`` 0, ``<start>`` 1, ``<end>`` 2, ``<unk>`` 3),
then the words, sorted. Its target ``captions`` is int64 ``[N, R, T]``: up to ``R`` reference
captions per image, each ``<start> w1 ... wn <end>`` padded with ``<pad>`` (a row of pads is no
caption); target ``novel`` (int64 ``[N]``) is 1 for an image holding a composition held out of
training (``shapes-cap``'s test split; 0 everywhere in the user's data). The training run's vocabulary is the training split's words (:func:`restrict_vocabulary`;
words seen only in validation become ``<unk>``); it is stored in the checkpoint as its
``class_names`` (JSON), and new data is read into it by :func:`match_vocabulary`.

The user format (:func:`load_captions`): a folder of images and one captions file in it,
``captions.json`` or ``captions.csv`` (or the path of that file itself):

* JSON: ``{"img1.png": "a caption", "img2.png": ["one caption", "another"]}``, or a list of
  ``{"image": "img1.png", "caption": "..."}`` / ``{"image": ..., "captions": [...]}`` objects;
* CSV: a header with the columns ``image`` and ``caption``, one row per caption (an image with
  several captions has several rows).

Image paths are relative to the folder. Every problem is a :class:`~archzoo.validate.UserError`
naming the file and the entry: a missing or unreadable image (``skip_bad`` lists and skips it), an
empty caption, an unknown or missing column, an image listed twice (JSON) or the same caption
twice, no entries at all. Images are decoded into memory, resized (squashed, nothing cropped: a
caption may speak of any corner) to ``image_size`` (default :data:`DEFAULT_SIZE`).
Words: lower-cased runs of letters and digits (:func:`tokenize`).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .dataset import ImageDataset

SPECIALS = ("<pad>", "<start>", "<end>", "<unk>")
PAD, START, END, UNK = range(4)
CAPTION_FILES = ("captions.json", "captions.csv")
CSV_COLUMNS = ("image", "caption")
DEFAULT_SIZE = 128
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """The words of ``text``: lower-cased runs of letters and digits (``"A red-circle."`` -> ``a red circle``)."""
    return _WORD.findall(text.lower())


def build_vocabulary(sentences: Sequence[Sequence[str]]) -> list[str]:
    """:data:`SPECIALS` and then every word of ``sentences`` (token lists), sorted."""
    words = sorted({w for s in sentences for w in s} - set(SPECIALS))
    return [*SPECIALS, *words]


def encode(words: Sequence[str], vocabulary: Sequence[str] | dict, length: int | None = None) -> list[int]:
    """``<start> ids <end>`` (words not in ``vocabulary`` are ``<unk>``), padded to ``length``."""
    index = vocabulary if isinstance(vocabulary, dict) else {w: i for i, w in enumerate(vocabulary)}
    ids = [START, *(index.get(w, UNK) for w in words), END]
    return ids + [PAD] * ((length or len(ids)) - len(ids))


def decode(ids, vocabulary: Sequence[str]) -> str:
    """The sentence of token ``ids`` (any ``<start>``/``<pad>`` skipped, stopping at ``<end>``)."""
    words = []
    for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
        if i == END:
            break
        if i not in (PAD, START):
            words.append(vocabulary[i])
    return " ".join(words)


def check_vocabulary(vocabulary: Sequence[str], where: str = "the vocabulary") -> None:
    """A vocabulary starts with :data:`SPECIALS` and names no word twice."""
    from ..validate import UserError

    if tuple(vocabulary[:4]) != SPECIALS:
        raise UserError(f"{where} must start with {', '.join(SPECIALS)}, got {list(vocabulary[:4])}")
    dup = sorted({w for w in vocabulary if list(vocabulary).count(w) > 1})
    if dup:
        raise UserError(f"{where} names {dup[:5]} more than once")


def captions_dataset(images: torch.Tensor, captions: Sequence[Sequence[str]], extra: dict | None = None) -> ImageDataset:
    """A captioning dataset of uint8 ``images [N, C, H, W]`` and, per image, its captions (text),
    with the vocabulary of all their words; ``extra``: further per-image target tensors."""
    sentences = [[tokenize(c) for c in caps] for caps in captions]
    vocabulary = build_vocabulary([s for caps in sentences for s in caps])
    index = {w: i for i, w in enumerate(vocabulary)}
    refs = max((len(caps) for caps in sentences), default=1)
    length = max((len(s) for caps in sentences for s in caps), default=0) + 2
    tokens = torch.full((len(sentences), refs, length), PAD, dtype=torch.int64)
    for i, caps in enumerate(sentences):
        for r, s in enumerate(caps):
            tokens[i, r] = torch.tensor(encode(s, index, length))
    novel = torch.zeros(len(sentences), dtype=torch.int64)  # no held-out compositions unless ``extra`` says
    return ImageDataset(vocabulary, images=images, task="captioning",
                        targets={"captions": tokens, "novel": novel, **(extra or {})})


def _lut(old: Sequence[str], new: Sequence[str]) -> torch.Tensor:
    index = {w: i for i, w in enumerate(new)}
    return torch.tensor([index.get(w, UNK) for w in old], dtype=torch.int64)


def match_vocabulary(ds: ImageDataset, vocabulary: Sequence[str]) -> ImageDataset:
    """``ds`` with its tokens re-indexed into ``vocabulary`` (a checkpoint's); its words that
    ``vocabulary`` lacks become ``<unk>``, as they were in training."""
    check_vocabulary(vocabulary, "the checkpoint's vocabulary (class_names)")
    if list(ds.class_names) == list(vocabulary):
        return ds
    return ds.remap_classes(list(vocabulary), _lut(ds.class_names, vocabulary))


def restrict_vocabulary(train: ImageDataset, val: ImageDataset | None) -> tuple[ImageDataset, ImageDataset | None]:
    """Both sets in the vocabulary of the words ``train``'s captions use (words only ``val``
    uses become ``<unk>``): the vocabulary a run trains, checkpoints and evaluates with."""
    used = torch.unique(train.targets["captions"]).tolist()
    vocabulary = [*SPECIALS, *sorted(train.class_names[i] for i in used if i >= len(SPECIALS))]
    return match_vocabulary(train, vocabulary), (match_vocabulary(val, vocabulary) if val is not None else None)


# ---------------------------------------------------------------- the user format


def is_captions_dir(path: Path) -> bool:
    """A folder holding a captions file (:data:`CAPTION_FILES`), or such a file itself."""
    path = Path(path)
    if path.is_file():
        return path.name.lower() in CAPTION_FILES
    return path.is_dir() and any((path / name).is_file() for name in CAPTION_FILES)


def _captions_file(path: Path) -> Path:
    from ..validate import UserError, shown

    if path.is_file():
        if path.suffix.lower() not in (".json", ".csv"):
            raise UserError(f"{shown(path)}: a captions file is JSON (.json) or CSV (.csv)")
        return path
    found = [path / name for name in CAPTION_FILES if (path / name).is_file()]
    if not found:
        raise UserError(f"{shown(path)} holds no captions file: put the captions in {' or '.join(CAPTION_FILES)} "
                        "next to the images (JSON: {\"image.png\": \"a caption\" or [captions]}; CSV: columns "
                        "image,caption)")
    if len(found) > 1:
        raise UserError(f"{shown(path)} holds both {' and '.join(f.name for f in found)}; keep one, or give the file "
                        "itself as --data")
    return found[0]


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        from ..validate import UserError

        raise UserError(f"lists the image {dup[0]!r} more than once (give one entry with a list of captions)")
    return dict(pairs)


def _read_json(file: Path) -> list[tuple[str, str, str]]:
    """``(image, caption, where)`` entries of a JSON captions file."""
    from ..validate import UserError, shown

    try:
        data = json.loads(file.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    except UserError as e:
        raise UserError(f"{shown(file)}: {e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{shown(file)} is not valid JSON: {e}") from None
    entries = []

    def add(image, caps, where):
        if not isinstance(image, str) or not image:
            raise UserError(f"{shown(file)}, {where}: the image must be a file name (text), got {image!r}")
        caps = [caps] if isinstance(caps, str) else caps
        if not isinstance(caps, list) or not caps or not all(isinstance(c, str) for c in caps):
            raise UserError(f"{shown(file)}, {where} ({image}): captions must be a text or a non-empty list of texts, "
                            f"got {caps!r}")
        entries.extend((image, c, where) for c in caps)

    if isinstance(data, dict):
        for image, caps in data.items():
            add(image, caps, f"entry {image!r}")
    elif isinstance(data, list):
        for i, item in enumerate(data):
            if not isinstance(item, dict):
                raise UserError(f"{shown(file)}, item {i}: expected an object with 'image' and 'caption' or 'captions', "
                                f"got {type(item).__name__}")
            unknown = sorted(set(item) - {"image", "caption", "captions"})
            if unknown:
                raise UserError(f"{shown(file)}, item {i}: unknown field {unknown[0]!r} (fields: image, caption, captions)")
            if "image" not in item or ("caption" in item) == ("captions" in item):
                raise UserError(f"{shown(file)}, item {i}: needs 'image' and one of 'caption' or 'captions'")
            add(item["image"], item.get("caption", item.get("captions")), f"item {i}")
    else:
        raise UserError(f"{shown(file)}: expected an object (image -> captions) or a list of entries, got "
                        f"{type(data).__name__}")
    return entries


def _read_csv(file: Path) -> list[tuple[str, str, str]]:
    from ..validate import UserError, shown

    try:
        with open(file, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{shown(file)} is not a readable CSV file: {e}") from None
    if not rows:
        raise UserError(f"{shown(file)} is empty; expected a header {','.join(CSV_COLUMNS)} and one row per caption")
    header = [h.strip().lower() for h in rows[0]]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise UserError(f"{shown(file)}: unknown column {unknown[0]!r} in the header (columns: {', '.join(CSV_COLUMNS)})")
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing or len(set(header)) != len(header):
        raise UserError(f"{shown(file)}: the header must name the columns {', '.join(CSV_COLUMNS)} once each, got "
                        f"{rows[0]}")
    col = {c: header.index(c) for c in CSV_COLUMNS}
    entries = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise UserError(f"{shown(file)}, line {n}: {len(row)} fields, the header has {len(header)} "
                            "(quote captions that contain commas)")
        entries.append((row[col["image"]].strip(), row[col["caption"]], f"line {n}"))
    return entries


def load_captions(path, subset: str = "train", skip_bad: bool = False, image_size: int | None = None):
    """``(dataset, bad items)`` of the user format at ``path`` (see the module doc); a folder
    with ``train/``, ``val/``, ``test/`` split folders is read at ``subset``."""
    from PIL import Image

    from ..validate import UserError, shown
    from .folder import BadImageError, decode_image, resolve_root

    path = Path(path).expanduser()
    if path.is_dir():
        path = resolve_root(path, subset)
    file = _captions_file(path)
    root = file.parent
    entries = _read_json(file) if file.suffix.lower() == ".json" else _read_csv(file)
    if not entries:
        raise UserError(f"{shown(file)} lists no captions")
    by_image: dict[str, list[str]] = {}
    where_of: dict[str, str] = {}
    for image, text, where in entries:
        if not tokenize(text):
            raise UserError(f"{shown(file)}, {where} ({image}): the caption is empty (no words in {text!r})")
        rel = Path(image)
        if rel.is_absolute() or ".." in rel.parts:
            raise UserError(f"{shown(file)}, {where}: image paths are relative to {shown(root)} and stay inside it, "
                            f"got {image!r}")
        caps = by_image.setdefault(image, [])
        if any(tokenize(c) == tokenize(text) for c in caps):
            raise UserError(f"{shown(file)}, {where}: the caption {text!r} of {image} is listed twice")
        caps.append(text)
        where_of.setdefault(image, where)
    size = image_size or DEFAULT_SIZE
    images, captions, bad = [], [], []
    for image, caps in by_image.items():
        full = root / image
        try:
            if not full.is_file():
                raise BadImageError(full, "no such image file")
            a = decode_image(full, 3)
        except BadImageError as e:
            if not skip_bad:
                raise UserError(f"{shown(file)}, {where_of[image]}: {e}") from None
            bad.append((str(full), str(e)))
            continue
        a = np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR))
        images.append(torch.from_numpy(a.copy()).permute(2, 0, 1))
        captions.append(caps)
    if not images:
        raise UserError(f"{shown(file)}: none of its {len(by_image)} images could be read")
    return captions_dataset(torch.stack(images), captions), bad


def load_caption_splits(spec, *, val_split: float = 0.1, seed: int = 0, subset: str = "train", skip_bad: bool = False,
                        image_size: int | None = None):
    """:func:`archzoo.data.load_dataset` for captioning: ``"shapes-cap"`` (built in, subsets
    ``train``/``test``) or the user format at ``spec``; a seeded ``val_split`` of the images is
    held out, and both parts take the training part's vocabulary (:func:`restrict_vocabulary`)."""
    import warnings

    from . import _TEST_ALIASES
    from .dataset import DatasetSplits, split_dataset

    name = str(spec)
    bad = []
    if name == "shapes-cap":
        from .shapes_captions import load_shapes_captions

        ds = load_shapes_captions(_TEST_ALIASES.get(subset.lower(), subset.lower()), size=image_size)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            from ..validate import UserError

            raise UserError(f"dataset {name!r} is neither the built-in shapes-cap nor an existing folder or captions file")
        ds, bad = load_captions(path, subset, skip_bad=skip_bad, image_size=image_size)
        if bad:
            warnings.warn(f"{name}: skipped {len(bad)} unreadable images (listed in bad_files); first: "
                          f"{bad[0][0]}: {bad[0][1]}", stacklevel=3)
    train, val = split_dataset(ds, val_split, seed)
    train, val = restrict_vocabulary(train, val)
    n = len(train) + (len(val) if val is not None else 0)
    description = f"captions: {n} images, {len(train.class_names) - len(SPECIALS)} words in the training vocabulary"
    return DatasetSplits(train=train, val=val, class_names=list(train.class_names), bad_files=bad,
                         description=description)
