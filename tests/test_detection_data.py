"""Detection sets on disk: Pascal VOC XML, COCO JSON and YOLO txt read to one dataset; every bad
annotation is an error naming the file and the object, line or annotation id (or, with
``skip_bad``, a listed item); shapes-det written in each format reads back the same; the
augmentation recipes move boxes with the pixels."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import shared_data
from PIL import Image
from torchvision.transforms import v2

from archzoo.data import load_dataset, shapes
from archzoo.data.annotations import TOLERANCE, AnnotationError
from archzoo.data.transforms import DenseTransform
from archzoo.validate import UserError

pytestmark = pytest.mark.filterwarnings("ignore")
NAMES = list(shapes.CLASS_NAMES[:3])  # circle, ellipse, triangle


# ---------------------------------------------------------------- writers


def _image(path: Path, w: int = 40, h: int = 30, seed: int = 0) -> Path:
    a = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return path


def _voc_xml(objects, size=(40, 30)) -> str:
    """``objects``: (name, xmin, ymin, xmax, ymax[, difficult]) with any values (written as given)."""
    body = "".join(f"<object><name>{o[0]}</name><difficult>{o[5] if len(o) > 5 else 0}</difficult><bndbox>"
                   f"<xmin>{o[1]}</xmin><ymin>{o[2]}</ymin><xmax>{o[3]}</xmax><ymax>{o[4]}</ymax></bndbox></object>"
                   for o in objects)
    return f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>{body}</annotation>"


@functools.cache
def _shapes(n: int, size: int) -> shapes.Shapes:
    return shapes.generate(n, size=size, objects=(1, 3), classes=3)


def write_shapes(root: Path, fmt: str, n: int = 12, size: int = 48) -> Path:
    """The first ``n`` multi-object shapes images (3 classes) as a ``fmt`` set (voc, voc-standard,
    coco, yolo) of PNG files; boxes are whole pixels, so VOC and COCO keep them exactly."""
    data = _shapes(n, size)
    root.mkdir(parents=True)
    sub = {"voc": "", "voc-standard": "JPEGImages", "coco": "", "yolo": "images"}[fmt]
    (root / sub).mkdir(exist_ok=True)
    coco = {"images": [], "annotations": [], "categories": [{"id": 7 + k, "name": n_} for k, n_ in enumerate(NAMES)]}
    for i in range(n):
        t = data.target(i)
        Image.fromarray(data.images[i].permute(1, 2, 0).numpy()).save(root / sub / f"{i:03d}.png")
        boxes, labels = t["boxes"].tolist(), t["labels"].tolist()
        if fmt.startswith("voc"):
            xml = _voc_xml([(NAMES[c], int(b[0]) + 1, int(b[1]) + 1, int(b[2]), int(b[3])) for b, c in zip(boxes, labels)],
                           (size, size))
            folder = root / "Annotations" if fmt == "voc-standard" else root
            folder.mkdir(exist_ok=True)
            (folder / f"{i:03d}.xml").write_text(xml)
        elif fmt == "coco":
            coco["images"].append({"id": 50 + i, "file_name": f"{i:03d}.png", "width": size, "height": size})
            for b, c in zip(boxes, labels):
                coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": 50 + i, "category_id": 7 + c,
                                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "iscrowd": 0})
        else:
            (root / "labels").mkdir(exist_ok=True)
            lines = [f"{c} {(b[0] + b[2]) / 2 / size:.6f} {(b[1] + b[3]) / 2 / size:.6f} {(b[2] - b[0]) / size:.6f} "
                     f"{(b[3] - b[1]) / size:.6f}" for b, c in zip(boxes, labels)]
            (root / "labels" / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    if fmt == "coco":
        (root / "_annotations.coco.json").write_text(json.dumps(coco))
    if fmt == "yolo":
        (root / "data.yaml").write_text("names:\n" + "".join(f"  - {n_}\n" for n_ in NAMES))
    return root


def _load(path, **kw):
    return load_dataset(str(path), val_split=0.0, **kw)


# ---------------------------------------------------------------- round trips and real data


@pytest.mark.parametrize("fmt", ["voc", "voc-standard", "coco", "yolo"])
def test_shapes_written_in_each_format_read_back_the_same(tmp_path, fmt):
    root = write_shapes(tmp_path / fmt, fmt)
    splits = _load(root)
    ds = splits.train
    data = _shapes(12, 48)
    assert ds.task == "detection" and ds.class_names == NAMES and len(ds) == 12
    assert splits.description.startswith(f"detected {'Pascal VOC XML' if fmt.startswith('voc') else fmt.split('-')[0].upper()}")
    for i in range(12):
        image, t = ds[i]
        want = data.target(i)
        assert torch.equal(image, data.images[i])
        assert torch.equal(t["labels"], want["labels"]) and not t["difficult"].any()
        torch.testing.assert_close(t["boxes"], want["boxes"], atol=1e-3 if fmt == "yolo" else 0, rtol=0)


def test_nuts_photos_read_as_pascal_voc():
    root = shared_data("nuts/train")
    splits = load_dataset(str(root), val_split=0.0)
    ds = splits.train
    assert ds.class_names == ["date", "fig", "hazelnut"] and len(ds) == 16  # 16 pairs of N.jpg + N.xml
    assert "Pascal VOC XML: 16 images" in splits.description
    counts = ds.class_counts()
    assert counts.sum() == int((ds.targets["labels"] >= 0).sum()) and (counts > 10).all()
    image, t = ds[0]
    assert image.shape == (3, 600, 800)
    assert t["boxes"][0].tolist() == [100, 110, 242, 286]  # <xmin>101 <ymin>111 <xmax>242 <ymax>286
    valid = ds.targets["labels"] >= 0
    b = ds.targets["boxes"][valid]
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 800).all() and (b[:, 3] <= 600).all()
    assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    # the root above train/ reads its train split; a prefix forces the format
    assert len(load_dataset(str(root.parent), val_split=0.25).train) == 12
    assert len(_load(f"voc:{root}").train) == 16


# ---------------------------------------------------------------- Pascal VOC: every bad annotation


def _voc_one(tmp_path, objects, size=(40, 30), image=True) -> Path:
    root = tmp_path / "voc"
    root.mkdir()
    _image(root / "a.png")
    (root / "a.xml").write_text(_voc_xml([("circle", 2, 2, 10, 10)]))
    if image:
        _image(root / "b.png", seed=1)
    (root / "b.xml").write_text(_voc_xml(objects, size) if isinstance(objects, list) else objects)
    return root


@pytest.mark.parametrize("objects, needles", [
    ([("circle", 2, 2, 43, 10)], ["b.xml", "object 0 'circle'", "outside the 40x30 image"]),
    ([("circle", 2, 2, 10, 32)], ["b.xml", "outside"]),
    ([("circle", 12, 2, 10, 10)], ["b.xml", "object 0", "xmax < xmin"]),
    ([("circle", 2, 9, 10, 7)], ["b.xml", "ymax < ymin"]),
    ([("circle", 2, 2, "nan", 10)], ["b.xml", "xmax", "not a finite number"]),
    ([("circle", 2, 2, "inf", 10)], ["b.xml", "not a finite number"]),
    ([("circle", 2, "abc", 10, 10)], ["b.xml", "ymin", "'abc', not a number"]),
    ([("circle", 2, 2, 10, 10, 2)], ["b.xml", "<difficult> is '2'"]),
    ("<annotation><object><name>x</name></object></annotation>", ["b.xml", "object 0 'x' has no <bndbox>"]),
    ("<annotation><object><bndbox/></object></annotation>", ["b.xml", "object 0 has no <name>"]),
    ("<annotation><object><name>x</name><bndbox><xmin>1</xmin></bndbox></object></annotation>",
     ["b.xml", "has no <ymin>"]),
    ("<annotation><object>", ["b.xml", "malformed XML at line 1"]),
    ("<notvoc/>", ["b.xml", "not a Pascal VOC file"]),
    ([("circle", 2, 2, 10, 10)], ["b.xml", "says the image is 50x30", "is 40x30"]),
])
def test_voc_bad_annotations_are_named(tmp_path, objects, needles):
    size = (50, 30) if "says the image" in needles[-2] else (40, 30)
    root = _voc_one(tmp_path, objects, size)
    with pytest.raises(AnnotationError) as e:
        _load(root)
    for n in needles:
        assert n in str(e.value), str(e.value)
    assert isinstance(e.value, UserError) and "--skip-bad" in str(e.value)
    # with skip_bad the image is left out whole and listed
    splits = _load(root, skip_bad=True)
    assert len(splits.train) == 1 and len(splits.bad_files) == 1 and splits.bad_files[0][0].endswith("b.xml")


def test_voc_boxes_within_a_pixel_of_the_edge_are_clipped(tmp_path):
    assert TOLERANCE == 1.0
    root = _voc_one(tmp_path, [("circle", 0, 0, 41, 31)])  # VOC's xmin 0 is x1 = -1
    t = _load(root).train.target(1)
    assert t["boxes"].tolist() == [[0, 0, 40, 30]]


def test_voc_files_that_do_not_pair_up(tmp_path):
    root = _voc_one(tmp_path, [("circle", 2, 2, 10, 10)], image=False)
    with pytest.raises(AnnotationError, match=r"b\.xml: annotation without an image"):
        _load(root)
    (root / "b.xml").unlink()
    _image(root / "c.png")
    with pytest.raises(AnnotationError, match=r"c\.png: image without an annotation"):
        _load(root)
    (root / "c.xml").write_text(_voc_xml([]))  # no <object>: a valid negative
    ds = _load(root).train
    assert len(ds) == 2 and len(ds.target(1)["boxes"]) == 0
    _image(root / "c.jpg")
    with pytest.raises(AnnotationError, match=r"duplicate image id 'c'"):
        _load(root)


def test_voc_unreadable_image_and_unknown_class(tmp_path):
    root = _voc_one(tmp_path, [("circle", 2, 2, 10, 10)], image=False)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / "b.jpg", quality=95)
    data = (root / "b.jpg").read_bytes()
    (root / "b.jpg").write_bytes(data[: len(data) // 2])  # truncated JPEG
    with pytest.raises(AnnotationError, match=r"b\.jpg: image cannot be decoded \(pixel data is truncated"):
        _load(root)
    _image(root / "b.jpg")
    (root / "b.xml").write_text(_voc_xml([("dog", 2, 2, 10, 10)]))
    assert _load(root).train.class_names == ["circle", "dog"]  # sorted names found
    (root / "classes.txt").write_text("square\ncircle\n")  # a class list fixes the order and the classes
    with pytest.raises(AnnotationError, match=r"b\.xml: object 0 'dog': unknown class 'dog' \(not in .*classes\.txt"):
        _load(root)
    (root / "classes.txt").write_text("square\ncircle\ndog\n")
    assert _load(root).train.class_names == ["square", "circle", "dog"]


def test_voc_standard_layout_splits_and_difficult(tmp_path):
    root = write_shapes(tmp_path / "std", "voc-standard", n=6)
    (root / "Annotations" / "001.xml").write_text(_voc_xml([("circle", 2, 2, 10, 10), ("ellipse", 5, 5, 20, 20, 1)], (48, 48)))
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("000\n001\n002\n")
    (main / "val.txt").write_text("003\n004\n")
    train = _load(root).train
    assert len(train) == 3 and train.target(1)["difficult"].tolist() == [False, True]
    assert len(_load(root, subset="val").train) == 2
    with pytest.raises(AnnotationError, match=r"has no split 'test', only \['train', 'val'\]"):
        _load(root, subset="test")


# ---------------------------------------------------------------- COCO JSON


def _coco(tmp_path, edit=None, text=None) -> Path:
    root = write_shapes(tmp_path / "coco", "coco", n=3)
    js = root / "_annotations.coco.json"
    if text is not None:
        js.write_text(text)
    elif edit is not None:
        d = json.loads(js.read_text())
        edit(d)
        js.write_text(json.dumps(d))
    return root


def _ann(d, i=0):
    return d["annotations"][i]


@pytest.mark.parametrize("edit, needles", [
    (lambda d: _ann(d).update(bbox=[40, 2, 10, 5]), ["annotation id 1", "outside the 48x48 image"]),
    (lambda d: _ann(d).update(bbox=[2, 2, 0, 5]), ["annotation id 1", "has no width"]),
    (lambda d: _ann(d).update(bbox=[2, 2, 5, -1]), ["annotation id 1", "has no height"]),
    (lambda d: _ann(d).update(bbox=[2, "x", 5, 5]), ["annotation id 1: bbox[1] is 'x', not a number"]),
    (lambda d: _ann(d).update(bbox=[2, 2, float("nan"), 5]), ["annotation id 1: bbox[2]", "not a finite number"]),
    (lambda d: _ann(d).update(bbox=[2, 2, 5]), ["annotation id 1: bbox must be [x, y, width, height]"]),
    (lambda d: _ann(d).update(category_id=99), ["annotation id 1: unknown category id 99"]),
    (lambda d: _ann(d).update(image_id=99), ["image id 99 is not in 'images'"]),
    (lambda d: _ann(d).pop("bbox"), ["annotation id 1 has no 'bbox'"]),
    (lambda d: _ann(d, 1).update(id=1), ["duplicate annotation id 1"]),
    (lambda d: d["images"][1].update(id=50), ["duplicate image id 50"]),
    (lambda d: d["images"][0].pop("file_name"), ["images[0] has no 'file_name'"]),
    (lambda d: d["images"][0].update(file_name="gone.png"), ["gone.png: image is missing"]),
    (lambda d: d["images"][0].update(width=40), ["says the image is 40x48"]),
    (lambda d: _ann(d).update(iscrowd=3), ["iscrowd is 3"]),
])
def test_coco_bad_annotations_are_named(tmp_path, edit, needles):
    root = _coco(tmp_path, edit)
    with pytest.raises(AnnotationError) as e:
        _load(root)
    for n in needles:
        assert n in str(e.value), str(e.value)
    splits = _load(root, skip_bad=True)  # the image of a bad annotation is left out (all 3 where it names none)
    assert splits.bad_files and len(splits.train) == (3 if "not in 'images'" in needles[0] else
                                                      1 if "duplicate image" in needles[0] else 2)


@pytest.mark.parametrize("text, needle", [
    ('{"images": [', "malformed JSON at line 1, column 13"),
    ("[]", "holds a JSON list"),
    ('{"images": [], "annotations": []}', "has no list 'categories'"),
    ('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}',
     "duplicate category id 1"),
])
def test_coco_malformed_files_are_named(tmp_path, text, needle):
    root = _coco(tmp_path, text=text)
    for skip in (False, True):  # nothing to skip: the file itself is bad
        with pytest.raises(AnnotationError, match="_annotations.coco.json: " + needle.replace("[", r"\[").replace("(", r"\(")):
            _load(root, skip_bad=skip)


def test_coco_labels_negatives_crowds_and_unlisted_images(tmp_path):
    def edit(d):
        d["annotations"] = [a for a in d["annotations"] if a["image_id"] != 51]  # image 51: no objects
        d["annotations"][0]["iscrowd"] = 1
        d["categories"].insert(0, {"id": 99, "name": "zebra"})  # ids order the labels: zebra is last
    root = _coco(tmp_path, edit)
    ds = _load(root).train
    assert ds.class_names == [*NAMES, "zebra"] and len(ds.target(1)["boxes"]) == 0
    assert ds.target(0)["difficult"][0] and ds.class_counts()[3] == 0
    assert len(_load(root / "_annotations.coco.json").train) == 3  # --data may name the JSON
    _image(root / "stray.png")
    with pytest.raises(AnnotationError, match=r"stray\.png: image not listed in _annotations\.coco\.json"):
        _load(root)


# ---------------------------------------------------------------- YOLO txt


def _yolo(tmp_path, line=None) -> Path:
    root = write_shapes(tmp_path / "yolo", "yolo", n=3)
    if line is not None:
        (root / "labels" / "001.txt").write_text("0 0.5 0.5 0.2 0.2\n" + line + "\n")
    return root


@pytest.mark.parametrize("line, needles", [
    ("0 0.95 0.5 0.2 0.2", ["001.txt", "line 2", "outside the 48x48 image"]),
    ("0 0.5 0.5 0 0.2", ["line 2", "has no width"]),
    ("0 0.5 0.5 0.2 -0.1", ["line 2", "has no height"]),
    ("0 0.5 nan 0.2 0.2", ["line 2", "cy is 'nan', not a finite number"]),
    ("0 0.5 0.5 inf 0.2", ["line 2", "not a finite number"]),
    ("0 0.5 0.5 x 0.2", ["line 2", "w is 'x', not a number"]),
    ("3 0.5 0.5 0.2 0.2", ["line 2", "unknown class '3'", "0..2"]),
    ("1.5 0.5 0.5 0.2 0.2", ["line 2", "unknown class '1.5'"]),
    ("0 0.5 0.5 0.2", ["line 2", "4 values, expected 5"]),
    ("0 0.1 0.1 0.2 0.1 0.3 0.3", ["line 2", "segment (polygon)"]),
])
def test_yolo_bad_lines_are_named(tmp_path, line, needles):
    root = _yolo(tmp_path, line)
    with pytest.raises(AnnotationError) as e:
        _load(root)
    for n in needles:
        assert n in str(e.value), str(e.value)
    splits = _load(root, skip_bad=True)
    assert len(splits.train) == 2 and splits.bad_files[0][0].endswith("001.txt")


def test_yolo_negatives_orphans_duplicates_and_names(tmp_path):
    root = _yolo(tmp_path)
    (root / "labels" / "001.txt").write_text("")  # empty: a negative
    (root / "labels" / "002.txt").unlink()  # no label file: a negative too (as ultralytics reads it)
    ds = _load(root).train
    assert len(ds) == 3 and len(ds.target(1)["boxes"]) == 0 and len(ds.target(2)["boxes"]) == 0
    (root / "labels" / "009.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(AnnotationError, match=r"009\.txt: label file without an image"):
        _load(root)
    assert len(_load(root, skip_bad=True).train) == 3
    (root / "labels" / "009.txt").unlink()
    _image(root / "images" / "000.jpg")
    with pytest.raises(AnnotationError, match=r"duplicate image id: 000\.jpg, 000\.png"):
        _load(root)
    (root / "images" / "000.jpg").unlink()
    (root / "data.yaml").write_text("names: {0: a, 1: b, 2: c}\n")
    assert _load(root).train.class_names == ["a", "b", "c"]
    (root / "data.yaml").write_text("names: {0: a, 2: c}\n")
    with pytest.raises(AnnotationError, match=r"data\.yaml: names: the keys must be the class indices"):
        _load(root)
    (root / "data.yaml").unlink()
    with pytest.raises(AnnotationError, match="needs its class names"):
        _load(root)
    (root / "labels" / "classes.txt").write_text("x\ny\nz\n")
    assert _load(root).train.class_names == ["x", "y", "z"]


def test_yolo_split_folders(tmp_path):
    root = _yolo(tmp_path)
    for sub in ("images", "labels"):
        (root / sub / "train").mkdir()
        for f in sorted((root / sub).glob("*.*")):
            f.rename(root / sub / "train" / f.name)
    assert len(_load(root).train) == 3


# ---------------------------------------------------------------- format detection


def test_ambiguous_formats_are_refused_and_can_be_forced(tmp_path):
    root = write_shapes(tmp_path / "both", "yolo", n=3)
    (root / "x.xml").write_text(_voc_xml([]))
    _image(root / "x.png")
    with pytest.raises(UserError, match=r"several detection formats \(voc, yolo\); force one with a prefix"):
        _load(root)
    assert len(_load(f"yolo:{root}").train) == 3
    assert len(_load(root, format="yolo").train) == 3
    with pytest.raises(ValueError, match="format must be one of voc, coco, yolo"):
        _load(root, format="kitti")


# ---------------------------------------------------------------- augmentations move boxes with pixels

COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))


def _rectangles(h=48, w=64):
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    boxes = torch.tensor([[4.0, 6, 20, 30], [30, 10, 60, 22], [12, 34, 44, 46]])
    for (x1, y1, x2, y2), c in zip(boxes.long().tolist(), COLOURS):
        image[:, y1:y2, x1:x2] = torch.tensor(c, dtype=torch.uint8)[:, None, None]
    return image, {"boxes": boxes, "labels": torch.tensor([0, 1, 2]), "difficult": torch.tensor([False, True, False])}


@pytest.mark.parametrize("recipe", ["ssd", "scale-jitter", "basic"])
def test_recipes_move_boxes_with_the_rectangles_they_frame(recipe):
    """Each box still frames its filled rectangle after the recipe (within 1 px; the photometric
    part of ssd is left out here: it changes colours, not places)."""
    image, target = _rectangles()
    tf = DenseTransform(True, 64, (0.0,) * 3, (1.0,) * 3, boxes=True, recipe=recipe, small=False, scale=(0.3, 1.0))
    if recipe == "ssd":
        tf.geometric.transforms[0] = v2.Identity()
    moved = 0
    for seed in range(12):
        torch.manual_seed(seed)
        x, out = tf(image, target)
        assert x.shape == (3, 64, 64)
        assert len(out["boxes"]) == len(out["labels"]) == len(out["difficult"])
        for box, lab, diff in zip(out["boxes"], out["labels"], out["difficult"]):
            assert bool(diff) == (int(lab) == 1)  # flags travel with their boxes
            c = int(lab)
            others = [o for o in range(3) if o != c]
            strong = (x[c] > 0.6) & (x[others[0]] < 0.3) & (x[others[1]] < 0.3)
            rows, cols = torch.nonzero(strong, as_tuple=True)
            if len(rows) == 0:
                continue  # a sliver the crop kept of the rectangle: nothing strong enough to check
            x1, y1, x2, y2 = box.tolist()
            assert x1 - 1 <= cols.min() and cols.max() + 1 <= x2 + 1 and y1 - 1 <= rows.min() and rows.max() + 1 <= y2 + 1, \
                (recipe, seed, box, cols.min(), cols.max(), rows.min(), rows.max())
            assert cols.min() <= x1 + 2 and x2 - 2 <= cols.max() + 1 and rows.min() <= y1 + 2 and y2 - 2 <= rows.max() + 1, \
                (recipe, seed, box)
            moved += not torch.allclose(box, target["boxes"][c])
        # a dropped box leaves at most a sliver of its rectangle (the IoU crop drops an object whose centre it
        # leaves out, as SSD does, however much of it shows)
        for c in set(range(3)) - set(out["labels"].tolist()) if recipe != "ssd" else ():
            others = [o for o in range(3) if o != c]
            assert int(((x[c] > 0.6) & (x[others[0]] < 0.3) & (x[others[1]] < 0.3)).sum()) <= 64
    assert moved > 5


def test_ssd_recipe_keeps_instance_masks_and_boxes_together():
    image, target = _rectangles()
    target["masks"] = torch.zeros(3, 48, 64, dtype=torch.bool)
    for k, (x1, y1, x2, y2) in enumerate(target["boxes"].long().tolist()):
        target["masks"][k, y1:y2, x1:x2] = True
    tf = DenseTransform(True, 64, (0.5,) * 3, (0.5,) * 3, boxes=True, recipe="ssd")
    for seed in range(8):
        torch.manual_seed(seed)
        _, out = tf(image, target)
        for box, m in zip(out["boxes"], out["masks"]):
            if m.any():
                rows, cols = torch.nonzero(m, as_tuple=True)
                assert box[0] - 1 <= cols.min() and cols.max() + 1 <= box[2] + 1
                assert box[1] - 1 <= rows.min() and rows.max() + 1 <= box[3] + 1


def test_detection_recipes_are_refused_for_classification():
    from archzoo.data import build_transform
    from archzoo.engine.config import TrainConfig

    assert TrainConfig(augment="ssd").augment == "ssd"
    with pytest.raises(ValueError, match="'ssd' is a detection recipe"):
        build_transform(True, 32, (0.5,), (0.5,), augment="ssd")
    with pytest.raises(ValueError, match="for detection"):
        DenseTransform(True, 32, (0.5,), (0.5,), recipe="ssd")


def test_detection_task_batches_carry_difficult_but_the_detector_does_not_see_it(tmp_path):
    from archzoo.engine.config import TrainConfig
    from archzoo.engine.detection import DetectionTask

    root = write_shapes(tmp_path / "voc", "voc", n=4)
    (root / "001.xml").write_text(_voc_xml([("circle", 2, 2, 10, 10, 1)], (48, 48)))
    ds = _load(root).train
    task = DetectionTask(3, NAMES)
    tf = task.sample_transform(True, TrainConfig(augment="ssd"), 32, (0.5,) * 3, (0.5,) * 3, 3)
    x, targets = task.collate([tf(*ds[i]) for i in range(4)])
    assert x.shape == (4, 3, 32, 32) and all(set(t) == {"boxes", "labels", "difficult"} for t in targets)
    seen = []
    task.forward(lambda images, t: seen.append(t), x, targets)
    assert all(set(t) == {"boxes", "labels"} for t in seen[0])
