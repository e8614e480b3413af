"""Pascal VOC segmentation sets (Everingham et al. 2010): ``JPEGImages/N.jpg`` with the class mask
``SegmentationClass/N.png``, a palette ("P") PNG whose palette indices are the classes: 0 the
background, 1..20 the objects, 255 the "void" outlines and difficult regions, never scored
(:data:`~archzoo.data.IGNORE_INDEX`). ``ImageSets/Segmentation/<subset>.txt`` lists the ids of a
split (``train``, ``val``, ``trainval``); without it every mask is read. ``SegmentationObject/``
(instance ids) is not read. A VOC root may hold a detection set too (``Annotations/``): the task
of the model picks one (see :func:`archzoo.data.load_dataset`).

Classes: a class file at the root or the folder above (``classes.txt``, ``labelmap.txt``; see
:mod:`.masks`); a names-only list that does not start with ``background`` gets it as value 0, so
the ``classes.txt`` of the detection set (objects only) serves both. Without one, a root named
``VOC2007``/``VOC2012`` (the devkit's) has the 20 VOC classes and the background, any other the
index classes ``value_0..value_m`` of the values found. A CVAT "Segmentation mask" export
(RGB masks and ``labelmap.txt`` of ``name:r,g,b`` lines) is read by colour.

A listed id without a mask or an image, a mask without an image, and every check of :mod:`.masks`
(sizes, colour masks, values outside the map) are errors naming the file, or with ``skip_bad``
listed items. Images without a mask are not: most VOC photos have boxes only.
"""

from __future__ import annotations

from pathlib import Path

from .annotations import AnnotationError, Problems
from .masks import FileMasks, Pair, ValueMap, find_class_file, finish, name_of, read_class_file
from .voc import _files, _image_ext

FORMAT = "Pascal VOC segmentation"
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")


def is_vocseg_dir(path: Path) -> bool:
    return (path / "SegmentationClass").is_dir()


def _ids(root: Path, subset: str, masks: dict) -> tuple[list[str], Path | None]:
    """The ids of the split (and the file that lists them), or every mask's."""
    folder = root / "ImageSets" / "Segmentation"
    splits = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
    if not splits:
        return sorted(masks), None
    split = folder / f"{subset}.txt"
    if not split.is_file():
        raise AnnotationError(folder, f"has no split {subset!r}, only {splits}; pass subset= (--subset) one of them")
    ids = [ln.split()[0] for ln in split.read_text(encoding="utf-8").splitlines() if ln.strip()]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise AnnotationError(split, f"lists the ids {dup[:5]} more than once")
    return ids, split


def _value_map(root: Path, values, class_map) -> ValueMap:
    """The map of a VOC set (see the module doc); 255 is ignored whatever the map says."""
    if class_map is not None:
        return class_map if isinstance(class_map, ValueMap) else ValueMap.from_json(class_map)
    path = find_class_file(root, root.parent)
    if path is not None:
        vm = read_class_file(path)
        if not vm.colour and vm.rule == "names in value order" and vm.names[0].lower() != "background":
            vm = ValueMap(list(range(len(vm.names) + 1)), ["background", *vm.names], vm.ignore, rule=vm.rule,
                          source=vm.source)
        if not vm.colour and 255 not in vm.values + vm.ignore:
            vm = ValueMap(vm.values, vm.names, [*vm.ignore, 255], rule=vm.rule + "; 255 is not scored",
                          source=vm.source)
        return vm
    rest = sorted(int(v) for v in values if v != 255)
    if root.name.upper().startswith("VOC"):
        return ValueMap(list(range(len(VOC_CLASSES))), list(VOC_CLASSES), [255],
                        rule=f"the Pascal VOC classes of {root.name}; 255 is not scored")
    m = rest[-1] if rest else 0
    return ValueMap(list(range(m + 1)), [name_of(v) for v in range(m + 1)], [255],
                    rule=f"index masks 0..{m}; 255 is not scored")


def load_voc_seg(root: Path, subset: str = "train", *, skip_bad: bool = False, class_map=None):
    """``(dataset, bad items, description)`` of a VOC segmentation set (see the module doc)."""
    root = Path(root)
    problems = Problems(skip_bad)
    masks = _files(root / "SegmentationClass", _image_ext)
    images = _files(root / "JPEGImages", _image_ext) if (root / "JPEGImages").is_dir() else {}
    ids, split = _ids(root, subset, masks)
    if not ids:
        raise AnnotationError(root / "SegmentationClass", "holds no masks (an empty folder)")
    pairs = []
    for i in ids:
        ms, ims = masks.get(i, []), images.get(i, [])
        for what, files in (("image", ims), ("mask", ms)):
            if len(files) > 1:
                problems(files[0], f"two {what}s of id {i!r}: {', '.join(p.name for p in files)}; keep one", key=i)
        if i in problems.bad_keys:
            continue
        if not ms:
            problems(split or root, f"lists {i!r}, but SegmentationClass/ has no {i}.png", key=i)
        elif not ims:
            problems(ms[0], f"mask without an image (no JPEGImages/{i}.*)", key=i)
        else:
            pairs.append(Pair(str(ims[0]), str(ms[0])))
    fixed = class_map is not None or find_class_file(root, root.parent) is not None
    colour = fixed and _value_map(root, [], class_map).colour
    ds, text = finish(pairs, problems, FORMAT, root, FileMasks(colour),
                      lambda values: _value_map(root, values, class_map))
    return ds, problems.items, text
