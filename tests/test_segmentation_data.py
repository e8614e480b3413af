"""Segmentation sets on disk: image/mask folder pairs (the real U-Net membrane slices), Pascal VOC
palette masks and COCO polygons/RLE read to one dataset; the map from mask values to classes is
explicit (inferred, from a class file, or a checkpoint's) and stated; every bad pair is an error
naming the file (or, with ``skip_bad``, a listed item); the segmentation recipes move masks with
the pixels (rotations and the elastic warp included) and fill what comes from outside with
``IGNORE_INDEX``."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import shared_data
from PIL import Image
from torchvision.transforms import v2

from archzoo.data import IGNORE_INDEX, load_dataset, split_dataset
from archzoo.data.annotations import AnnotationError
from archzoo.data.masks import MaskDataset, ValueMap
from archzoo.data.transforms import DenseTransform, RandomRotate90, UNetElastic
from archzoo.validate import UserError

pytestmark = pytest.mark.filterwarnings("ignore")


# every test here on one torch thread (the one_thread fixture of conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def _load(path, **kw):
    return load_dataset(str(path), val_split=0.0, **kw)


# ---------------------------------------------------------------- writers


def _grey(path: Path, a: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(a, dtype=np.uint8)).save(path)
    return path


def _photo(path: Path, h: int = 16, w: int = 24, seed: int = 0) -> Path:
    a = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


def binary_mask(h: int = 16, w: int = 24, seed: int = 0) -> np.ndarray:
    """0/255 blobs: a rectangle of 255 placed by the seed."""
    m = np.zeros((h, w), np.uint8)
    r = np.random.default_rng(seed)
    y, x = int(r.integers(0, h // 2)), int(r.integers(0, w // 2))
    m[y:y + h // 2, x:x + w // 2] = 255
    return m


def write_pairs(root: Path, n: int = 4, images: str = "image", masks: str = "label", mask_fn=binary_mask,
                size=(16, 24)) -> Path:
    for i in range(n):
        _photo(root / images / f"{i}.png", *size, seed=i)
        _grey(root / masks / f"{i}.png", mask_fn(*size, seed=i))
    return root


# ---------------------------------------------------------------- the real membrane slices


def test_membrane_slices_read_as_binary_image_mask_pairs():
    root = shared_data("membrane")
    loaded = load_dataset(str(root), val_split=0.0)
    full = loaded.train
    assert isinstance(full, MaskDataset) and full.task == "segmentation" and len(full) == 25
    assert full.class_names == ["value_0", "value_255"] == loaded.class_names
    assert full.value_map.to_json() == {"values": [0, 255], "names": ["value_0", "value_255"], "ignore": [],
                                        "colour": False}
    assert loaded.description.startswith("detected image/mask folder pairs: 25 images (512x512, grey), 2 classes")
    assert "mask values -> classes: 0 -> value_0, 255 -> value_255 (binary masks" in loaded.description
    assert full.images.shape == (25, 1, 512, 512) and full.targets["mask"].shape == (25, 512, 512)  # in memory
    # item 0 is slice 0.png: its pixels and its mask as on disk (0 = membrane -> class 0, 255 = cell -> class 1)
    image = np.asarray(Image.open(root / "image" / "0.png"))
    label = np.asarray(Image.open(root / "label" / "0.png"))
    assert torch.equal(full.images[0, 0], torch.from_numpy(image))
    assert torch.equal(full.targets["mask"][0], torch.from_numpy((label == 255).astype(np.uint8)))
    counts = full.class_counts()
    assert counts.sum() == 25 * 512 * 512 and counts[1] == sum(
        int((np.asarray(Image.open(root / "label" / f"{i}.png")) == 255).sum()) for i in range(25))
    assert 0.1 < counts[0] / counts.sum() < 0.4  # membranes are the thin minority, cells the rest
    train, val = split_dataset(full, 0.2, 0)  # what load_dataset(val_split=0.2) holds out
    assert len(train) == 20 and len(val) == 5 and train.images.shape == (20, 1, 512, 512)
    assert val.value_map is train.value_map is full.value_map  # the split keeps the map


# ---------------------------------------------------------------- the value map


def test_value_maps_inferred_from_the_values_found(tmp_path):
    binary = _load(write_pairs(tmp_path / "binary")).train
    assert binary.class_names == ["value_0", "value_255"] and binary.value_map.ignore == []
    assert set(binary.targets["mask"].unique().tolist()) == {0, 1}

    def index(h, w, seed):
        m = np.arange(h * w).reshape(h, w) % 3
        m[0, seed] = 255
        return m
    ds = _load(write_pairs(tmp_path / "index", mask_fn=index)).train
    assert ds.class_names == ["value_0", "value_1", "value_2"] and ds.value_map.ignore == [255]
    want = index(16, 24, seed=1).astype(np.uint8)  # index masks map to themselves, 255 kept as "ignore"
    assert torch.equal(ds.targets["mask"][1], torch.from_numpy(want))
    assert "index masks 0..2; 255 is not scored" in ds.value_map.describe()

    grey = lambda h, w, seed: np.full((h, w), (0, 128, 255)[seed % 3])  # noqa: E731
    levels = _load(write_pairs(tmp_path / "levels", mask_fn=grey)).train
    assert levels.class_names == ["value_0", "value_128", "value_255"]
    assert levels.targets["mask"][:, 0, 0].tolist() == [0, 1, 2, 0]
    assert levels.value_map.describe() == ("0 -> value_0, 128 -> value_128, 255 -> value_255 "
                                           "(grey levels: every value a class)")


def test_class_files_name_and_map_the_values(tmp_path):
    root = write_pairs(tmp_path / "m")
    (root / "classes.txt").write_text("membrane\ncell\n")  # names only: values 0 and 1, so 255 is outside the map
    with pytest.raises(AnnotationError) as e:
        _load(root)
    msg = str(e.value)
    assert "label/0.png: value 255 is not in the class map (0 -> membrane, 1 -> cell" in msg.replace("\\", "/")
    assert "list it in classes.txt ('255 name', or '255 ignore'" in msg and "--skip-bad" in msg
    (root / "classes.txt").write_text("# value name\n0 membrane\n255: cell\n")
    ds = _load(root).train
    assert ds.class_names == ["membrane", "cell"] and ds.value_map.values == [0, 255]
    assert torch.equal(ds.targets["mask"], torch.from_numpy(np.stack([binary_mask(seed=i) for i in range(4)]) // 255))
    assert "0 -> membrane, 255 -> cell (values and names from" in ds.value_map.describe()
    (root / "classes.txt").write_text("0 membrane\n255 ignore\n")
    ds = _load(root).train
    assert ds.class_names == ["membrane"] and set(ds.targets["mask"].unique().tolist()) == {0, IGNORE_INDEX}
    (root / "classes.txt").write_text("0 membrane\n0 cell\n")
    with pytest.raises(AnnotationError, match=r"classes\.txt: the value 0 is mapped more than once"):
        _load(root)
    (root / "labelmap.txt").write_text("membrane:0,0,0::\n")
    with pytest.raises(AnnotationError, match="holds both classes.txt and labelmap.txt"):
        _load(root)


def test_colour_labelmap_reads_rgb_masks_by_colour(tmp_path):
    root = tmp_path / "cvat"
    colours = np.array([[0, 0, 0], [250, 50, 83], [36, 179, 83]], np.uint8)
    for i in range(3):
        _photo(root / "images" / f"{i}.png", seed=i)
        index = (np.arange(16 * 24).reshape(16, 24) // (7 + i)) % 3
        (root / "masks").mkdir(exist_ok=True)
        Image.fromarray(colours[index]).save(root / "masks" / f"{i}.png")
    (root / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\ncar:250,50,83::\n"
                                       "tree:36,179,83::\n")
    ds = _load(root).train
    assert ds.class_names == ["background", "car", "tree"] and ds.value_map.colour
    want = (np.arange(16 * 24).reshape(16, 24) // 9) % 3
    assert torch.equal(ds.targets["mask"][2], torch.from_numpy(want).to(torch.uint8))
    assert "(250, 50, 83) -> car" in ds.value_map.describe()
    Image.fromarray(np.full((16, 24, 3), 7, np.uint8)).save(root / "masks" / "1.png")
    with pytest.raises(AnnotationError, match=r"1\.png: value \(7, 7, 7\) is not in the class map"):
        _load(root)


def test_a_checkpoint_map_reads_new_data_the_way_the_model_was_trained(tmp_path):
    three = lambda h, w, seed: np.arange(h * w).reshape(h, w) % 3  # noqa: E731
    trained = _load(write_pairs(tmp_path / "train", mask_fn=three)).train.value_map.to_json()
    two = write_pairs(tmp_path / "new", n=2, mask_fn=lambda h, w, seed: np.arange(h * w).reshape(h, w) % 2)
    assert _load(two).train.class_names == ["value_0", "value_1"]  # inferred alone: two classes
    ds = _load(two, class_map=json.loads(json.dumps(trained))).train  # through JSON, as checkpoint metadata
    assert ds.class_names == ["value_0", "value_1", "value_2"] and "the checkpoint's map" in ds.value_map.describe()
    _grey(two / "label" / "1.png", np.full((16, 24), 7))
    with pytest.raises(AnnotationError, match=r"1\.png: value 7 is not in the class map"):
        _load(two, class_map=trained)
    with pytest.raises(UserError, match="class_map must be a value map"):
        _load(two, class_map={"names": ["a"]})
    only_zero = write_pairs(tmp_path / "zero", n=2, mask_fn=lambda h, w, seed: np.zeros((h, w)))
    assert _load(only_zero).train.class_names == ["value_0", "value_255"]  # grey masks of 0 alone: still binary


def test_grey_rgb_masks_bilevel_masks_and_other_folder_names(tmp_path):
    root = write_pairs(tmp_path / "rgb", images="img", masks="masks")
    m = binary_mask(seed=2)
    Image.fromarray(np.stack([m] * 3, -1)).save(root / "masks" / "2.png")  # RGB with three equal channels: grey
    Image.fromarray(binary_mask(seed=3) > 0).save(root / "masks" / "3.png")  # mode "1": 0/255 as it shows
    assert Image.open(root / "masks" / "3.png").mode == "1"
    ds = _load(root).train
    assert ds.class_names == ["value_0", "value_255"]
    assert torch.equal(ds.targets["mask"][2], torch.from_numpy(m // 255))
    assert torch.equal(ds.targets["mask"][3], torch.from_numpy(binary_mask(seed=3) // 255))
    assert ds.images.shape == (4, 3, 16, 24)  # colour photos


# ---------------------------------------------------------------- bad pairs, each named


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage, needles", [
    (lambda r: (r / "label" / "2.png").unlink(), ["image/2.png", "image without a mask (no label/2.* beside it)"]),
    (lambda r: (r / "image" / "2.png").unlink(), ["label/2.png", "mask without an image (no image/2.*)"]),
    (lambda r: _grey(r / "label" / "2.png", np.zeros((16, 20))),
     ["label/2.png", "mask is 20x16 pixels, but its image is 24x16"]),
    (lambda r: _photo(r / "label" / "2.png"),
     ["label/2.png", "a colour (RGB) mask where class indices are expected (pixel (0, 0) is"]),
    (lambda r: _truncate(r / "image" / "2.png"), ["image/2.png", "image cannot be decoded", "truncated or corrupt"]),
    (lambda r: _truncate(r / "label" / "2.png"), ["label/2.png", "truncated or corrupt"]),
    (lambda r: (r / "label" / "2.png").write_bytes(b"not a png"), ["label/2.png", "not an image Pillow can identify"]),
    (lambda r: (r / "image" / "2.png").write_bytes(b""), ["image/2.png", "empty file (0 bytes)"]),
    (lambda r: (r / "label" / "2.png").rename(r / "label" / "2.jpg"),
     ["label/2.jpg", "a JPEG mask", "save masks as PNG"]),
    (lambda r: _photo(r / "image" / "2.jpg"), ["image/2.jpg", "two images of one name: 2.jpg, 2.png"]),
    (lambda r: Image.fromarray(np.zeros((16, 24), np.float32), "F").save(r / "label" / "2.tif"),
     ["label/2.png", "two masks of one name"]),
])
def test_bad_pairs_are_named(tmp_path, damage, needles):
    root = write_pairs(tmp_path / "pairs")
    damage(root)
    with pytest.raises(AnnotationError) as e:
        _load(root)
    msg = str(e.value).replace("\\", "/")
    for n in needles:
        assert n in msg, msg
    assert isinstance(e.value, UserError) and "--skip-bad" in msg
    splits = _load(root, skip_bad=True)  # the pair is left out and listed
    assert len(splits.train) == 3 and len(splits.bad_files) == 1
    assert needles[0] in splits.bad_files[0][0].replace("\\", "/")


def test_empty_and_unusable_folders_are_named(tmp_path):
    (tmp_path / "e" / "image").mkdir(parents=True)
    (tmp_path / "e" / "label").mkdir()
    _grey(tmp_path / "e" / "label" / "0.png", np.zeros((4, 4)))
    with pytest.raises(AnnotationError, match=r"image: holds no images \(an empty image folder\)"):
        _load(tmp_path / "e", format="masks")
    root = write_pairs(tmp_path / "all-bad", n=2)
    for f in (root / "label").iterdir():
        f.write_bytes(b"junk")
    with pytest.raises(UserError, match=r"no usable image/mask pair in this image/mask folder pairs dataset \(first: "):
        _load(root, skip_bad=True)
    with pytest.raises(AnnotationError, match="holds no image and mask folders"):
        _load(f"masks:{tmp_path / 'e' / 'image'}")
    with pytest.raises(UserError, match="holds no segmentation set"):
        _load(tmp_path / "e" / "image", task="segmentation")


# ---------------------------------------------------------------- images of several sizes: read per item


def test_images_of_several_sizes_are_read_per_item(tmp_path):
    root = tmp_path / "sizes"
    sizes = [(16, 24), (20, 12), (8, 8)]
    for i, (h, w) in enumerate(sizes):
        _photo(root / "images" / f"{i}.png", h, w, seed=i)
        _grey(root / "labels" / f"{i}.png", np.arange(h * w).reshape(h, w) % 3)
    splits = _load(root)
    ds = splits.train
    assert ds.images is None and ds.targets == {} and "read per item" in splits.description
    assert "3 images (3 sizes, colour)" in splits.description
    for i, (h, w) in enumerate(sizes):
        image, t = ds[i]
        assert image.shape == (3, h, w) and t["mask"].shape == (h, w) and t["mask"].dtype == torch.int64
        assert torch.equal(t["mask"], torch.from_numpy(np.arange(h * w).reshape(h, w) % 3))
    want = sum(torch.bincount(ds[i][1]["mask"].flatten(), minlength=3) for i in range(3))
    assert torch.equal(ds.class_counts(), want)  # from the histograms taken at loading
    sub = ds.subset([2, 0])
    assert torch.equal(sub[0][1]["mask"], ds[2][1]["mask"])
    assert torch.equal(sub.class_counts(), ds.subset([0, 2]).class_counts())
    swapped = ds.remap_classes(["value_2", "value_1", "value_0"], torch.tensor([2, 1, 0]))
    assert torch.equal(swapped[1][1]["mask"], 2 - ds[1][1]["mask"]) and swapped.value_map.values == [2, 1, 0]
    assert torch.equal(swapped.class_counts(), want.flip(0))
    again = pickle.loads(pickle.dumps(sub))  # what DataLoader workers receive
    assert torch.equal(again[1][1]["mask"], sub[1][1]["mask"])
    splits = load_dataset(str(root), val_split=0.34, seed=0)
    assert len(splits.train) == 2 and len(splits.val) == 1
    assert splits.val.value_map is splits.train.value_map and splits.val.value_map.to_json() == ds.value_map.to_json()


# ---------------------------------------------------------------- Pascal VOC palette masks


def voc_palette() -> list[int]:
    """The VOC colour map (bit-interleaved class index), 256 RGB entries."""
    out = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out += [r, g, b]
    return out


def _voc_mask(h=16, w=24, seed=0) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[2:10, 3:12] = 15  # person
    m[8:14, 10 + seed:20] = 1 + seed  # aeroplane, bicycle, ...
    m[1, :] = 255  # void outline
    return m


def write_voc(root: Path, n: int = 4, detection: bool = False) -> Path:
    for i in range(n):
        _photo(root / "JPEGImages" / f"2007_{i:06d}.jpg", seed=i)
        (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(_voc_mask(seed=i))
        im.putpalette(voc_palette())
        im.save(root / "SegmentationClass" / f"2007_{i:06d}.png")
        if detection:
            (root / "Annotations").mkdir(exist_ok=True)
            (root / "Annotations" / f"2007_{i:06d}.xml").write_text(
                "<annotation><object><name>person</name><bndbox><xmin>4</xmin><ymin>3</ymin><xmax>12</xmax>"
                "<ymax>10</ymax></bndbox></object></annotation>")
    if not detection:
        _photo(root / "JPEGImages" / "2007_009999.jpg")  # a photo without a mask (boxes only): not an error
    return root


def test_voc_palette_masks_with_void_ignored(tmp_path):
    root = write_voc(tmp_path / "VOC2012")
    assert Image.open(root / "SegmentationClass" / "2007_000000.png").mode == "P"
    splits = _load(root)
    ds = splits.train
    assert len(ds) == 4 and ds.num_classes == 21
    assert ds.class_names[0] == "background" and ds.class_names[15] == "person"
    assert ds.value_map.ignore == [255] and "the Pascal VOC classes of VOC2012; 255 is not scored" in splits.description
    for i in range(4):
        assert torch.equal(ds[i][1]["mask"], torch.from_numpy(_voc_mask(seed=i)).long())  # palette indices, 255 kept
    assert splits.description.startswith("detected Pascal VOC segmentation: 4 images (24x16, colour), 21 classes")
    seg = root / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True)
    (seg / "train.txt").write_text("2007_000000\n2007_000002\n")
    (seg / "val.txt").write_text("2007_000001\n2007_000007\n")
    assert len(_load(root).train) == 2
    with pytest.raises(AnnotationError, match=r"val\.txt: lists '2007_000007', but SegmentationClass/ has no "):
        _load(root, subset="val")
    assert len(_load(root, subset="val", skip_bad=True).train) == 1
    with pytest.raises(AnnotationError, match=r"has no split 'test', only \['train', 'val'\]"):
        _load(root, subset="test")


def test_voc_class_files_and_other_roots(tmp_path):
    root = write_voc(tmp_path / "mine", n=2)  # not the devkit: index classes 0..max found
    ds = _load(root).train
    assert ds.class_names == [f"value_{i}" for i in range(16)] and ds.value_map.ignore == [255]
    (root / "classes.txt").write_text("\n".join(["aeroplane", "bicycle", *[f"c{i}" for i in range(3, 15)], "person"]))
    ds = _load(root).train  # the detection set's class list (objects only): the background comes first
    assert ds.class_names[:3] == ["background", "aeroplane", "bicycle"] and ds.class_names[15] == "person"
    (root / "classes.txt").write_text("background\naeroplane\n")
    with pytest.raises(AnnotationError, match=r"value 15 is not in the class map"):
        _load(root)
    colour = np.zeros((16, 24, 3), np.uint8) + np.array([1, 2, 3], np.uint8)
    Image.fromarray(colour).save(root / "SegmentationClass" / "2007_000001.png")
    (root / "classes.txt").unlink()
    with pytest.raises(AnnotationError, match=r"2007_000001\.png: a colour \(RGB\) mask where class indices"):
        _load(root)


def test_a_voc_root_with_boxes_and_masks_is_read_for_the_models_task(tmp_path):
    root = write_voc(tmp_path / "VOC2007", detection=True)
    with pytest.raises(UserError, match=r"several formats \(voc, vocseg\); force one .* or give the model's task"):
        _load(root)
    assert _load(root, task="segmentation").train.task == "segmentation"
    assert _load(root, task="detection").train.task == "detection"
    assert _load(f"vocseg:{root}").train.task == "segmentation"
    assert _load(f"voc:{root}", task="segmentation").train.task == "segmentation"  # voc: read for a segmenter
    assert _load(f"voc:{root}").train.task == "detection"
    with pytest.raises(UserError, match="vocseg: is a segmentation format; the model is a detection model"):
        _load(f"vocseg:{root}", task="detection")


# ---------------------------------------------------------------- COCO polygons and RLE


def _rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE (column-major runs, starting with zeros) of a 0/1 mask."""
    flat = mask.T.flatten()
    runs, prev, n = [], 0, 0
    for v in flat:
        if v != prev:
            runs.append(n)
            prev, n = v, 0
        n += 1
    runs.append(n)
    return {"size": list(mask.shape), "counts": runs}


def write_coco(root: Path) -> Path:
    root.mkdir(parents=True)
    for i in range(2):
        _photo(root / f"{i}.png", 32, 40, seed=i)
    crowd = np.zeros((32, 40), np.uint8)
    crowd[20:30, 0:12] = 1
    anns = [  # image 0: a large square, a small triangle on it, a crowd overlapping the square
        {"id": 1, "image_id": 10, "category_id": 3, "segmentation": [[2, 2, 30, 2, 30, 28, 2, 28]], "iscrowd": 0},
        {"id": 2, "image_id": 10, "category_id": 5, "segmentation": [[10, 10, 20, 10, 15, 20]], "iscrowd": 0},
        {"id": 3, "image_id": 10, "category_id": 5, "segmentation": _rle(crowd), "iscrowd": 1},
        # image 1: two polygons of one object, and a second object drawn before the larger one in the file
        {"id": 4, "image_id": 11, "category_id": 5, "segmentation": [[1, 1, 8, 1, 8, 8], [20.5, 3, 38, 3, 38, 25.5]],
         "iscrowd": 0},
        {"id": 5, "image_id": 11, "category_id": 3, "segmentation": [[0, 0, 39, 0, 39, 31, 0, 31]], "iscrowd": 0},
    ]
    coco = {"images": [{"id": 10 + i, "file_name": f"{i}.png", "width": 40, "height": 32} for i in range(2)],
            "categories": [{"id": 5, "name": "cup"}, {"id": 3, "name": "table"}], "annotations": anns}
    (root / "_annotations.coco.json").write_text(json.dumps(coco))
    return root


def test_coco_polygons_and_rle_rasterise_as_pycocotools_draws_them(tmp_path):
    from pycocotools.coco import COCO

    root = write_coco(tmp_path / "coco")
    splits = _load(f"cocoseg:{root}")
    ds = splits.train
    assert ds.class_names == ["background", "table", "cup"]  # category ids 3, 5 in order, after the background
    assert splits.description.startswith("detected COCO JSON segmentation: 2 images (40x32, colour), 3 classes")
    ref = COCO(str(root / "_annotations.coco.json"))
    label = {3: 1, 5: 2}
    for i, iid in enumerate((10, 11)):
        anns = ref.loadAnns(ref.getAnnIds(imgIds=[iid], iscrowd=None))
        want = np.zeros((32, 40), np.int64)
        for a in [a for a in anns if a["iscrowd"]]:
            want[ref.annToMask(a) > 0] = IGNORE_INDEX
        for a in sorted([a for a in anns if not a["iscrowd"]], key=lambda a: -int(ref.annToMask(a).sum())):
            want[ref.annToMask(a) > 0] = label[a["category_id"]]
        got = ds[i][1]["mask"]
        assert torch.equal(got, torch.from_numpy(want)), i
    m0 = ds[0][1]["mask"]
    assert (m0 == 2).sum() > 20 and (m0 == IGNORE_INDEX).sum() > 20 and (m0 == 1).sum() > 300  # cup on table kept
    assert (ds[1][1]["mask"] == 2).sum() > 100  # the smaller cup drawn over the larger table listed after it
    # a COCO file is a detection set unless segmentation is asked for (these annotations have no bbox)
    with pytest.raises(AnnotationError, match="annotation id 1 has no 'bbox'"):
        _load(root)
    assert _load(root, task="segmentation").train.task == "segmentation"
    assert _load(root / "_annotations.coco.json", task="segmentation").train.task == "segmentation"


def _edit(root: Path, fn) -> None:
    js = root / "_annotations.coco.json"
    d = json.loads(js.read_text())
    fn(d)
    js.write_text(json.dumps(d))


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d["annotations"][0].pop("segmentation"), "annotation id 1 has no 'segmentation'"),
    (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4]]), "segmentation[0] must be a polygon"),
    (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4, 5, "x"]]),
     "segmentation[0][5] is 'x', not a number"),
    (lambda d: d["annotations"][0].update(segmentation=[]), "segmentation is an empty list"),
    (lambda d: d["annotations"][0].update(segmentation=[[2, 2, 45, 2, 30, 28]]),
     "polygon reaches (2..45, 2..28), outside the 40x32"),
    (lambda d: d["annotations"][2]["segmentation"].update(size=[40, 32]),
     "annotation id 3: RLE size [40, 32] is not the image's [32, 40]"),
    (lambda d: d["annotations"][2]["segmentation"].update(counts=[5, 6]),
     "RLE counts must be non-negative integers adding up"),
    (lambda d: d["images"][0].update(width=41), "image id 10: says the image is 41x32 pixels, but the file is 40x32"),
    (lambda d: d["annotations"][0].update(category_id=9), "unknown category id 9"),
])
def test_coco_bad_segmentations_are_named(tmp_path, edit, needle):
    root = write_coco(tmp_path / "coco")
    _edit(root, edit)
    with pytest.raises(AnnotationError) as e:
        _load(f"cocoseg:{root}")
    assert "_annotations.coco.json: " in str(e.value) and needle in str(e.value), str(e.value)
    splits = _load(f"cocoseg:{root}", skip_bad=True)
    assert len(splits.train) == 1 and len(splits.bad_files) == 1


# ---------------------------------------------------------------- format detection


def test_masks_beside_images_are_not_yolo(tmp_path):
    root = write_pairs(tmp_path / "im", images="images", masks="labels")
    splits = _load(root)
    assert splits.train.task == "segmentation" and "image/mask folder pairs" in splits.description
    forced = _load(f"masks:{root}")  # the format forced by its prefix reads the same
    assert forced.description == splits.description and torch.equal(forced.train.images, splits.train.images)
    (root / "image").mkdir()
    with pytest.raises(AnnotationError, match=r"holds several image folders \(image, images\); keep one"):
        _load(root)
    write_pairs(tmp_path / "split" / "train", n=2)
    write_pairs(tmp_path / "split" / "val", n=3)
    assert len(_load(tmp_path / "split").train) == 2 and len(_load(tmp_path / "split", subset="val").train) == 3


# ---------------------------------------------------------------- augmentations keep masks on their pixels


def _blocks(h: int = 64, w: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An image of 8x8 blocks, each dark (40) or bright (220), and its mask: bright = class 1. The
    outer blocks are dark, as the black fill is: bilinear sampling across the edge stays dark."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(h // 8, w // 8, generator=g) > 0.5
    coarse[0] = coarse[-1] = coarse[:, 0] = coarse[:, -1] = False
    mask = coarse.repeat_interleave(8, 0).repeat_interleave(8, 1).long()
    return (40 + 180 * mask).to(torch.uint8)[None], mask


def _interior(mask: torch.Tensor) -> torch.Tensor:
    """Pixels whose whole 3x3 neighbourhood is one class (bilinear images and nearest masks agree
    there; at an edge of the picture the neighbourhood is incomplete, so those pixels are not)."""
    m = torch.nn.functional.pad(mask.float()[None, None], (1, 1, 1, 1), value=IGNORE_INDEX)
    lo = -torch.nn.functional.max_pool2d(-m, 3, 1)[0, 0]
    hi = torch.nn.functional.max_pool2d(m, 3, 1)[0, 0]
    return (lo == hi) & (mask != IGNORE_INDEX)


@pytest.mark.parametrize("recipe", ["unet", "pspnet"])
def test_segmentation_recipes_move_masks_with_the_pixels(recipe):
    image, mask = _blocks()
    tf = DenseTransform(True, 48, (0.0,), (1.0,), recipe=recipe)
    if recipe == "pspnet":  # its blur moves values across edges: it changes colours, not places
        assert isinstance(tf.geometric.transforms[-1], v2.RandomApply)
        tf.geometric.transforms[-1] = v2.Identity()
    moved = ignored = 0
    for seed in range(10):
        torch.manual_seed(seed)
        x, t = tf(image, {"mask": mask})
        m = t["mask"]
        assert x.shape == (1, 48, 48) and m.shape == (48, 48) and m.dtype == torch.int64
        assert set(m.unique().tolist()) <= {0, 1, IGNORE_INDEX}  # nearest: no value is made up
        inside = _interior(m)
        derived = (x[0] > 0.5).long()  # the mask the pixels spell (brightness/contrast stay well inside)
        assert inside.sum() >= 100  # pixels checked (a 0.5x pspnet resize leaves a quarter of the crop)
        assert torch.equal(derived[inside], m[inside]), (recipe, seed)
        # misaligned by a flip, the same check fails: the test can tell
        assert (derived.flip(-1)[inside] != m[inside]).float().mean() > 0.1
        moved += not torch.equal(m, torch.nn.functional.interpolate(mask[None, None].float(), size=48,
                                                                    mode="nearest")[0, 0].long())
        outside = m == IGNORE_INDEX
        if outside.any():  # pixels from beyond the image: ignored in the mask, black in the image
            ignored += 1
            assert (x[0][outside] < 0.1).float().mean() > 0.8
    assert moved >= 9 and ignored >= 3


def test_elastic_warp_and_quarter_turns_move_masks_exactly_with_images():
    from torchvision import tv_tensors

    image, mask = _blocks(48, 48)
    torch.manual_seed(0)
    turned = RandomRotate90()(tv_tensors.Image(image), tv_tensors.Mask(mask))
    k = [kk for kk in range(4) if torch.equal(turned[0], torch.rot90(image, kk, (-2, -1)))]
    assert len(k) == 1 and torch.equal(turned[1], torch.rot90(mask, k[0], (-2, -1)))
    warp = UNetElastic(fill={tv_tensors.Mask: IGNORE_INDEX, "others": 0})
    torch.manual_seed(1)
    d = warp.make_params([tv_tensors.Image(image)])["displacement"]
    pixels = d[0] * torch.tensor([48 / 2, 48 / 2])  # grid units -> pixels
    assert d.shape == (1, 48, 48, 2) and 0.3 < float(pixels.std()) < 3.0  # 10 px at 512 is ~1 px at 48
    for seed in range(5):
        torch.manual_seed(seed)
        x, m = warp(tv_tensors.Image(image), tv_tensors.Mask(mask))
        assert not torch.equal(m, mask) and set(m.unique().tolist()) <= {0, 1, IGNORE_INDEX}
        inside = _interior(m)
        assert torch.equal((x[0] > 130).long()[inside], m[inside])


def test_recipes_are_allowed_for_their_task_only():
    from archzoo.data import build_transform
    from archzoo.engine.config import AUGMENT_RECIPES, TrainConfig
    from archzoo.engine.task import make_task

    assert {"unet", "pspnet"} <= set(AUGMENT_RECIPES)
    task = make_task("segmentation", ["a", "b"], cfg=TrainConfig(augment="unet"))
    tf = task.sample_transform(True, TrainConfig(augment="unet"), 32, (0.5,), (0.5,), 1)
    assert any(isinstance(op, UNetElastic) for op in tf.geometric.transforms)
    evaluation = task.sample_transform(False, TrainConfig(augment="unet"), 32, (0.5,), (0.5,), 1)
    assert not any(isinstance(op, UNetElastic) for op in evaluation.geometric.transforms)
    with pytest.raises(ValueError, match="augment unet"):
        make_task("detection", ["a"], cfg=TrainConfig(augment="unet"))
    with pytest.raises(ValueError, match="'unet' is a segmentation recipe"):
        build_transform(True, 32, (0.5,), (0.5,), augment="unet")
    with pytest.raises(ValueError, match="for segmentation: its turns and warps move masks, not boxes"):
        DenseTransform(True, 32, (0.5,), (0.5,), recipe="pspnet", boxes=True)


def test_value_map_checks_itself():
    with pytest.raises(UserError, match="the value 3 is mapped more than once"):
        ValueMap([3, 4], ["a", "b"], [3])
    with pytest.raises(UserError, match="at most 255"):
        ValueMap(list(range(300)), [str(i) for i in range(300)])
    vm = ValueMap([0, 7], ["bg", "fg"], [9])
    assert vm.apply(np.array([[0, 7, 9]], np.uint8)).tolist() == [[0, 1, IGNORE_INDEX]]
    assert vm.apply(np.array([[7, 0]], np.int32)).tolist() == [[1, 0]]  # 16-bit masks take the search path
    with pytest.raises(AnnotationError, match=r"m\.png: value 8 is not in the class map \(0 -> bg, 7 -> fg, 9 -> ign"):
        vm.apply(np.array([[8]], np.uint8), "m.png")
    assert ValueMap.from_json(vm.to_json()).to_json() == vm.to_json()
