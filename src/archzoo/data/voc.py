"""Pascal VOC XML detection sets (Everingham et al. 2010), in two layouts:

* flat: ``N.jpg`` beside ``N.xml`` in one folder (LabelImg, Roboflow's VOC export);
* standard: ``Annotations/N.xml``, ``JPEGImages/N.jpg`` and optionally
  ``ImageSets/Main/<subset>.txt`` listing the ids of a split (without it: every annotation).

An annotation goes with the image of the same name (any image extension; ``<filename>`` is not
read). Each ``<object>`` needs ``<name>`` and ``<bndbox>`` with ``xmin``, ``ymin``, ``xmax``,
``ymax`` (numbers); ``<difficult>1`` flags it (kept, ignored by the evaluation). VOC coordinates
are 1-based pixel indices, both ends included, so the box is ``(xmin - 1, ymin - 1, xmax, ymax)``
in pixel-edge coordinates (detectron2 reads them so; ``xmin == xmax`` is a box one pixel wide).
A ``<size>`` that disagrees with the image is an error. An image without objects is an XML file
with no ``<object>``; an image without an XML file, or an XML file without an image, is bad.

Classes: the sorted set of names in the annotations, or the order of a ``classes.txt`` (one
name a line) in the folder or the one above it, in which case any other name is an error.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from ..validate import shown
from .annotations import (
    AnnotationError,
    Item,
    Problems,
    box_problem,
    finish,
    number,
    read_class_list,
)

FORMAT = "Pascal VOC XML"


def _image_ext(name: str) -> bool:
    from .folder import IMAGE_EXTENSIONS

    return name.lower().endswith(IMAGE_EXTENSIONS)


def is_voc_dir(path: Path) -> bool:
    """A standard layout (``Annotations/``) or a folder holding ``.xml`` files beside images."""
    if (path / "Annotations").is_dir():
        return True
    try:
        names = [e.name for e in os.scandir(path) if e.is_file() and not e.name.startswith(".")]
    except OSError:
        return False
    return any(n.lower().endswith(".xml") for n in names) and any(_image_ext(n) for n in names)


def _files(folder: Path, keep) -> dict[str, list[Path]]:
    """Non-hidden files of ``folder`` that ``keep(name)`` accepts, by stem."""
    out: dict[str, list[Path]] = {}
    for e in sorted(os.scandir(folder), key=lambda e: e.name):
        if e.is_file() and not e.name.startswith(".") and keep(e.name):
            out.setdefault(Path(e.name).stem, []).append(Path(e.path))
    return out


def _layout(root: Path, subset: str, problems: Problems) -> list[tuple[str, Path | None, Path | None]]:
    """``(id, xml, image)`` for every id of the set (``None`` where a file is missing)."""
    standard = (root / "Annotations").is_dir()
    ann_dir = root / "Annotations" if standard else root
    img_dir = root / "JPEGImages" if standard else root
    xmls = _files(ann_dir, lambda n: n.lower().endswith(".xml"))
    images = _files(img_dir, _image_ext) if img_dir.is_dir() else {}
    for stem, paths in images.items():
        if len(paths) > 1:
            problems(paths[0], f"duplicate image id {stem!r}: {', '.join(p.name for p in paths)} would share "
                               f"{stem}.xml; rename all but one", key=stem)
    main = root / "ImageSets" / "Main"
    split = main / f"{subset}.txt"
    splits = sorted(p.stem for p in main.glob("*.txt") if "_" not in p.stem) if standard and main.is_dir() else []
    if splits and not split.is_file():
        raise AnnotationError(main, f"has no split {subset!r}, only {splits}; pass subset= (--subset) one of them")
    if splits:
        ids = [ln.split()[0] for ln in split.read_text(encoding="utf-8").splitlines() if ln.strip()]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise AnnotationError(split, f"lists the ids {dup[:5]} more than once")
    else:
        ids = sorted(set(xmls) | set(images))
    out = []
    for i in ids:
        xml = xmls.get(i, [None])[0]
        image = images.get(i, [None])[0]
        out.append((i, xml, image))
    return out


def _text(node, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise ValueError(f"{where} has no <{tag}>")
    return child.text.strip()


def parse_voc(path: Path) -> tuple[list[tuple[str, list[float], bool, str]], tuple[int, int] | None]:
    """The objects ``(name, box, difficult, where)`` of one VOC XML file and the ``<size>`` it
    states; raises ``ValueError`` (malformed XML, a missing field, a bad number or box)."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as e:
        line, col = e.position
        raise ValueError(f"malformed XML at line {line}, column {col + 1}: {e.msg if hasattr(e, 'msg') else e}") from None
    except OSError as e:
        raise ValueError(f"cannot be read: {e.strerror or e}") from None
    root = tree.getroot()
    if root.tag != "annotation":
        raise ValueError(f"the root element is <{root.tag}>, not <annotation>: not a Pascal VOC file")
    size = None
    node = root.find("size")
    if node is not None and node.find("width") is not None and node.find("height") is not None:
        size = (int(number(_text(node, "width", "<size>"), "<size><width>")),
                int(number(_text(node, "height", "<size>"), "<size><height>")))
    objects = []
    for k, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        where = f"object {k} {name!r}" if name else f"object {k}"
        if not name:
            raise ValueError(f"{where} has no <name>")
        bb = obj.find("bndbox")
        if bb is None:
            raise ValueError(f"{where} has no <bndbox>")
        xmin, ymin, xmax, ymax = (number(_text(bb, t, where), f"{where}: <{t}>") for t in ("xmin", "ymin", "xmax", "ymax"))
        box = [xmin - 1, ymin - 1, xmax, ymax]
        problem = box_problem(box)
        if problem:
            raise ValueError(f"{where}: {problem.replace('x2 <= x1', 'xmax < xmin').replace('y2 <= y1', 'ymax < ymin')}")
        flag = (obj.findtext("difficult") or "0").strip()
        if flag not in ("0", "1"):
            raise ValueError(f"{where}: <difficult> is {flag!r}, not 0 or 1")
        objects.append((name, box, flag == "1", where))
    return objects, size


def _class_list(root: Path) -> tuple[list[str], Path] | None:
    for folder in (root, root.parent):
        if (folder / "classes.txt").is_file():
            return read_class_list(folder / "classes.txt"), folder / "classes.txt"
    return None


def load_voc(root: Path, subset: str = "train", *, skip_bad: bool = False):
    """``(dataset, bad items, description)`` of a VOC folder (see the module doc)."""
    problems = Problems(skip_bad)
    parsed = []
    for stem, xml, image in _layout(root, subset, problems):
        if stem in problems.bad_keys:
            continue
        if xml is None:
            problems(image, "image without an annotation: an image with no objects needs an XML file with no "
                            "<object>", key=stem)
            continue
        if image is None:
            problems(xml, "annotation without an image (no image file of the same name)", key=stem)
            continue
        try:
            objects, size = parse_voc(xml)
        except ValueError as e:
            problems(xml, str(e), key=stem)
            continue
        parsed.append((xml, image, objects, size))
    listed = _class_list(root)
    names = listed[0] if listed else sorted({o[0] for _, _, objs, _ in parsed for o in objs})
    index = {n: i for i, n in enumerate(names)}
    items = []
    for xml, image, objects, size in parsed:
        unknown = [(o[3], o[0]) for o in objects if o[0] not in index]
        if unknown:
            problems(xml, f"{unknown[0][0]}: unknown class {unknown[0][1]!r} (not in {shown(listed[1])})", key=str(image))
            continue
        items.append(Item(str(image), str(xml), boxes=[o[1] for o in objects], labels=[index[o[0]] for o in objects],
                          difficult=[o[2] for o in objects], where=[o[3] for o in objects], size=size))
    if not names:
        raise AnnotationError(root, "no annotation holds an object, so there are no class names; list them in "
                                    "classes.txt (one a line)")
    ds, text = finish(items, names, problems, FORMAT, root)
    return ds, problems.items, text
