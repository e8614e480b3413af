"""The data layer: built-in datasets, user formats, bad files, splits, transforms, caches."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from archzoo.data import ImageDataset, build_transform, folder, load_dataset, stratified_split
from archzoo.data.gpu import BatchAugment

from helpers import CIFAR_TAR, shared_data


# ---------------------------------------------------------------- digits and splits


def test_digits_contract():
    splits = load_dataset("digits", val_split=0.1, seed=0)
    assert splits.class_names == [str(d) for d in range(10)]
    assert splits.bad_files == []
    tr, va = splits.train, splits.val
    assert isinstance(tr, ImageDataset) and isinstance(va, ImageDataset)
    assert tr.images.dtype == torch.uint8 and tr.images.shape[1:] == (1, 32, 32)
    assert tr.labels.dtype == torch.int64 and len(tr.labels) == len(tr.images) == len(tr)
    x, y = tr[0]
    assert x.dtype == torch.uint8 and x.shape == (1, 32, 32) and set(y) == {"label"} and int(y["label"]) == int(tr.labels[0])
    assert tr.class_names == va.class_names == splits.class_names
    # real pen strokes: dark background, bright ink, every class present in both splits
    assert tr.images.float().mean() < 100 and tr.images.max() > 200
    assert (tr.class_counts() > 100).all() and (va.class_counts() > 10).all()
    # the fixed test subset is disjoint from train and the three together are the 1,797 images
    test = load_dataset("digits", subset="test", val_split=0).train
    assert len(tr) + len(va) + len(test) == 1797
    everything = torch.cat([tr.images, va.images, test.images]).flatten(1)
    assert len(torch.unique(everything, dim=0)) >= 1790  # (a handful of real duplicates)
    assert load_dataset("digits", val_split=0).val is None


def test_split_is_stratified_and_seeded():
    labels = torch.arange(10).repeat_interleave(torch.arange(10, 20))  # class c has 10 + c items
    tr, va = stratified_split(labels, 0.2, seed=3)
    assert len(set(tr.tolist()) & set(va.tolist())) == 0 and len(tr) + len(va) == len(labels)
    counts = torch.bincount(labels[va], minlength=10)
    assert counts.tolist() == [round(0.2 * (10 + c)) for c in range(10)]
    tr2, va2 = stratified_split(labels, 0.2, seed=3)
    assert torch.equal(va, va2)
    _, va3 = stratified_split(labels, 0.2, seed=4)
    assert not torch.equal(va, va3)
    a = load_dataset("digits", seed=1).val.images
    b = load_dataset("digits", seed=1).val.images
    c = load_dataset("digits", seed=2).val.images
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------- transforms


def test_build_transform_small_and_large():
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    ev = build_transform(False, 32, mean, std)
    out = ev(img)
    assert out.dtype == torch.float32 and out.shape == (3, 32, 32)
    expected = (img.float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    torch.testing.assert_close(out, expected)
    torch.manual_seed(0)
    tr = build_transform(True, 32, mean, std)
    outs = torch.stack([tr(img) for _ in range(8)])
    assert outs.shape == (8, 3, 32, 32) and any(not torch.equal(outs[0], o) for o in outs[1:])
    # large: eval resizes the shorter side to s / 0.875 and takes the centre crop
    photo = torch.randint(0, 256, (3, 120, 160), dtype=torch.uint8)
    assert build_transform(False, 96, mean, std)(photo).shape == (3, 96, 96)
    for aug in ("none", "basic", "randaugment", "trivialaugment"):
        assert build_transform(True, 96, mean, std, augment=aug, color_jitter=0.3)(photo).shape == (3, 96, 96)
        assert build_transform(True, 32, mean, std, augment=aug, color_jitter=0.3)(img).shape == (3, 32, 32)


def test_build_transform_channel_mismatch():
    grey = torch.randint(0, 256, (1, 32, 32), dtype=torch.uint8)
    rgb = grey.expand(3, -1, -1).clone()
    to_rgb = build_transform(False, 32, (0.5,) * 3, (0.5,) * 3)
    out = to_rgb(grey)
    assert out.shape == (3, 32, 32) and torch.equal(out[0], out[2])
    to_grey = build_transform(False, 32, (0.5,), (0.5,))
    torch.testing.assert_close(to_grey(rgb), (grey.float() / 255 - 0.5) / 0.5, atol=1 / 255 / 0.5, rtol=0)
    for aug in ("basic", "randaugment", "trivialaugment"):
        assert build_transform(True, 32, (0.5,), (0.5,), augment=aug, color_jitter=0.2)(grey).shape == (1, 32, 32)


def test_random_erasing_blanks_one_box_per_chosen_image():
    images = torch.full((2000, 3, 32, 32), 128, dtype=torch.uint8)
    mean, std = (0.5,) * 3, (0.25,) * 3
    plain = (128 / 255 - 0.5) / 0.25
    g = torch.Generator().manual_seed(0)
    out = BatchAugment(32, mean, std, pad=0, flip=False, erase=0.5, generator=g)(images)
    changed = (out - plain).abs().amax(1) > 1e-6  # [B, H, W]: where noise replaced the pixels
    hit = changed.flatten(1).any(1)
    assert 0.45 < hit.float().mean() < 0.55  # about half of the images
    for m in changed[hit][:200]:
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        box = torch.zeros_like(m)
        box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
        assert torch.equal(m, box)  # one filled rectangle
        assert 0.015 <= m.float().mean() <= 0.36  # area fraction U(0.02, 1/3), rounded to pixels
    evaluated = BatchAugment(32, mean, std, erase=1.0, train=False)(images[:4])
    assert (evaluated - plain).abs().max() < 1e-6  # never in evaluation
    with pytest.raises(ValueError, match="erase is a probability"):
        BatchAugment(32, mean, std, erase=1.5)
    tf = build_transform(True, 32, mean, std, erase=1.0)
    assert isinstance(tf.transforms[-1], v2.RandomErasing)
    assert not any(isinstance(t, v2.RandomErasing) for t in build_transform(False, 32, mean, std, erase=1.0).transforms)


def test_batch_augment_matches_per_sample_semantics():
    images = load_dataset("digits", val_split=0).train.images[:64]
    mean, std = (0.3,), (0.2,)
    ev = BatchAugment(32, mean, std, train=False)(images)
    torch.testing.assert_close(ev, (images.float() / 255 - 0.3) / 0.2)
    g = torch.Generator().manual_seed(0)
    aug = BatchAugment(32, mean, std, pad=4, flip=True, generator=g)
    out = aug(images)
    assert out.shape == (64, 1, 32, 32) and out.dtype == torch.float32
    # every output is a 32x32 window of the zero-padded (optionally mirrored) input
    padded = torch.nn.functional.pad(images.float() / 255, (4, 4, 4, 4))
    back = out * 0.2 + 0.3
    for i in range(8):
        windows = padded[i, 0].unfold(0, 32, 1).unfold(1, 32, 1)  # [9, 9, 32, 32]
        cand = torch.cat([windows.reshape(-1, 32, 32), windows.flip(-1).reshape(-1, 32, 32)])
        assert ((cand - back[i, 0]).abs().amax((1, 2)) < 1e-5).any()
    assert not torch.allclose(out, ev)  # something moved
    # reproducible with a seeded generator
    again = BatchAugment(32, mean, std, generator=torch.Generator().manual_seed(0))(images)
    torch.testing.assert_close(out, again)
    # channel matching, resizing and random-resized crops
    rgb = BatchAugment(64, (0.5,) * 3, (0.5,) * 3)(images)
    assert rgb.shape == (64, 3, 64, 64) and torch.equal(rgb[:, 0], rgb[:, 2])
    rrc = BatchAugment(24, (0.5,), (0.5,), scale=(0.3, 1.0))(images)
    assert rrc.shape == (64, 1, 24, 24) and rrc.isfinite().all()
    aug.eval()
    torch.testing.assert_close(aug(images), ev)


# ---------------------------------------------------------------- shapes


def test_shapes_generator_targets_and_determinism():
    from archzoo.data import shapes

    a = shapes.generate(300, size=32, seed=5)
    b = shapes.generate(300, size=32, seed=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, shapes.generate(300, size=32, seed=6).images)
    assert a.images.dtype == torch.uint8 and a.images.shape == (300, 3, 32, 32)
    assert a.labels.shape == (300, 1) and a.boxes.shape == (300, 1, 4) and a.masks.shape == (300, 1, 32, 32)
    # image i does not depend on how many are asked for, and sample(i) is image i (across a block edge)
    one = shapes.sample(257, size=32, seed=5)
    assert torch.equal(one["image"], a.images[257]) and torch.equal(one["boxes"], a.boxes[257])
    assert torch.equal(shapes.generate(10, size=32, seed=5).images, a.images[:10])
    # every image has its object; the box is the tight box of the mask (x2, y2 exclusive)
    m = a.masks[:, 0]
    assert (m.flatten(1).sum(1) >= 20).all()
    for i in range(0, 300, 37):
        rows, cols = torch.nonzero(m[i], as_tuple=True)
        assert a.boxes[i, 0].tolist() == [cols.min().item(), rows.min().item(), cols.max().item() + 1, rows.max().item() + 1]
    # the object stands out: mask pixels differ from the pixels just outside the box on average
    img = a.images.float()
    inside = (img * m[:, None]).sum((2, 3)) / m[:, None].sum((2, 3))
    outside = (img * ~m[:, None]).sum((2, 3)) / (~m[:, None]).sum((2, 3))
    assert ((inside - outside).norm(dim=1) > 40).float().mean() > 0.9
    # all eight classes appear, roughly balanced
    counts = torch.bincount(a.labels[:, 0], minlength=8)
    assert len(counts) == len(shapes.CLASS_NAMES) == 8 and counts.min() > 15


def test_shapes_multi_object():
    from archzoo.data import shapes

    d = shapes.generate(40, size=64, seed=1, objects=(2, 4))
    assert d.labels.shape == (40, 4) and d.masks.shape == (40, 4, 64, 64)
    n = (d.labels >= 0).sum(1)
    assert n.min() >= 2 and n.max() <= 4
    assert (d.masks.sum(1) <= 1).all()  # instance masks do not overlap
    t = d.target(0)
    assert len(t["labels"]) == len(t["boxes"]) == len(t["masks"]) == n[0]
    assert ((t["boxes"][:, 2] > t["boxes"][:, 0]) & (t["boxes"][:, 3] > t["boxes"][:, 1])).all()
    assert (d.boxes[d.labels < 0] == 0).all() and not d.masks[d.labels < 0].any()


def test_shapes_dataset_contract():
    splits = load_dataset("shapes", val_split=0.1, seed=0)
    assert splits.class_names == ["circle", "ellipse", "triangle", "square", "star", "cross", "ring", "crescent"]
    assert splits.train.images.shape[1:] == (3, 32, 32) and len(splits.train) + len(splits.val) == 10_000
    test = load_dataset("shapes", subset="test", val_split=0).train
    assert len(test) == 2_000 and not torch.equal(test.images[:100], splits.train.images[:100])
    big = load_dataset("shapes", subset="test", val_split=0, image_size=48).train
    assert big.images.shape[1:] == (3, 48, 48)


# ---------------------------------------------------------------- ImageFolder trees: real data


PER_CLASS = 20


@pytest.fixture(scope="module")
def cifar_jpegs(tmp_path_factory) -> Path:
    """The first ``PER_CLASS`` JPEGs of every class of the real CIFAR-10 tree (200 files)."""
    tar = shared_data(CIFAR_TAR)
    out = tmp_path_factory.mktemp("cifar_jpegs")
    taken: dict[str, int] = {}
    with tarfile.open(tar, "r|gz") as tf:
        for m in tf:
            parts = m.name.split("/")
            if m.isfile() and len(parts) == 3 and taken.get(parts[1], 0) < PER_CLASS:
                taken[parts[1]] = taken.get(parts[1], 0) + 1
                tf.extract(m, out, filter="data")
    return out  # out/train/<class>/NNNN.jpg


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHZOO_CACHE", str(tmp_path / "cache"))


def test_image_folder_real_cifar(cifar_jpegs):
    splits = load_dataset(cifar_jpegs, val_split=0.25, seed=0)  # the root holds only train/: picked by subset
    assert splits.class_names == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    tr, va = splits.train, splits.val
    assert tr.images.shape == (150, 3, 32, 32) and va.images.shape == (50, 3, 32, 32)
    assert (va.class_counts() == 5).all() and splits.bad_files == []
    # the cached pixels are exactly Pillow's decode of the file
    all_ = load_dataset(cifar_jpegs, val_split=0).train
    f = sorted((cifar_jpegs / "train" / "cat").iterdir())[3]
    ref = torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(all_.images[3 * PER_CLASS + 3], ref) and all_.labels[3 * PER_CLASS + 3] == 3
    with pytest.raises(ValueError, match="holds the splits"):
        load_dataset(cifar_jpegs, subset="test")


def test_image_folder_disk_cache(tmp_path, monkeypatch):
    root = tmp_path / "tree"  # 3 classes of 4 JPEGs
    for i in range(12):
        _save(root / ["ant", "bee", "bird"][i // 4] / f"{i:04d}.jpg", _rgb(i, (8, 8)), quality=90)
    first = load_dataset(root, val_split=0, cache=True).train
    files = list((tmp_path / "cache" / "datasets").glob("*.safetensors"))
    assert len(files) == 1
    calls = []
    real = folder.decode_image
    monkeypatch.setattr(folder, "decode_image", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = load_dataset(root, val_split=0, cache=True).train
    assert calls == [] and torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    pillow = torch.from_numpy(np.array(Image.open(root / "bee" / "0005.jpg").convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(again.images[5], pillow) and again.labels[5] == 1  # the cached pixels are the file's
    # a changed file (new mtime) is a new key: decoded again
    f = root / "bird" / "0008.jpg"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    load_dataset(root, val_split=0, cache=True)
    assert len(calls) == 12
    # a damaged cache file is ignored with a warning and rebuilt
    for c in (tmp_path / "cache" / "datasets").glob("*.safetensors"):
        c.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable dataset cache"):
        rebuilt = load_dataset(root, val_split=0, cache=True).train
    assert torch.equal(rebuilt.images, first.images)
    assert not list((tmp_path / "cache").rglob("*.pkl")) and not list((tmp_path / "cache").rglob("*.pt"))


# ---------------------------------------------------------------- ImageFolder trees: conversions


def _save(path: Path, img: Image.Image, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def _rgb(seed=0, size=(8, 6)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_image_folder_mode_conversions(tmp_path):
    root = tmp_path / "tree"
    _save(root / "a" / "rgb.png", _rgb(0))
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    _save(root / "a" / "grey.png", Image.fromarray(grey, "L"))
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., :3] = (200, 100, 0)
    rgba[:, :4, 3] = 255  # left half opaque, right half transparent
    rgba[:, 4:, 3] = 0
    rgba[0, 0, 3] = 128
    _save(root / "b" / "rgba.png", Image.fromarray(rgba, "RGBA"))
    pal = Image.new("P", (8, 6))
    pal.putpalette([10, 20, 30, 240, 230, 220] + [0] * 762)
    pal.putdata([0, 1] * 24)
    _save(root / "b" / "palette.png", pal)
    _save(root / "b" / "palette.gif", pal, transparency=1)  # colour 1 transparent -> white
    deep = np.full((6, 8), 257 * 100, np.uint16)
    deep[0, 0] = 65535
    _save(root / "c" / "deep.png", Image.fromarray(deep))  # 16-bit grey (mode I;16)
    _save(root / "c" / "bilevel.png", Image.fromarray(grey > 100).convert("1"))
    _save(root / "c" / "cmyk.jpg", _rgb(1).convert("CMYK"), quality=95)
    s = load_dataset(root, val_split=0)
    ds = s.train
    assert ds.images.shape == (8, 3, 6, 8)  # any colour image makes the dataset RGB
    get = {Path(n).name: ds.images[i] for i, n in enumerate(sorted(str(p.relative_to(root)) for p in root.rglob("*.*")))}
    assert torch.equal(get["grey.png"], torch.from_numpy(grey).expand(3, -1, -1))  # grey replicated
    assert get["rgba.png"][:, 1, 0].tolist() == [200, 100, 0] and get["rgba.png"][:, 1, 7].tolist() == [255, 255, 255]
    half = [round(c * 128 / 255 + 255 * 127 / 255) for c in (200, 100, 0)]  # alpha 128 over white
    assert get["rgba.png"][:, 0, 0].tolist() == half
    assert get["palette.png"][:, 0, :2].T.tolist() == [[10, 20, 30], [240, 230, 220]]
    assert get["palette.gif"][:, 0, :2].T.tolist() == [[10, 20, 30], [255, 255, 255]]
    assert get["deep.png"][0, 0, 0] == 255 and (get["deep.png"][:, 1:] == 100).all()
    assert set(get["bilevel.png"].unique().tolist()) == {0, 255}
    assert get["cmyk.jpg"].float().std() > 30  # converted to RGB, not left as ink densities
    small = load_dataset(root, val_split=0, image_size=4).train.images  # every mode resizes too
    assert small.shape == (8, 3, 4, 4) and (small[7][:, 1:, 1:] == 100).all()  # deep.png, away from its 255 corner


def test_image_folder_grey_tree_and_exif(tmp_path):
    root = tmp_path / "grey"
    for c in ("x", "y"):
        for i in range(3):
            _save(root / c / f"{i}.png", Image.fromarray(np.full((5, 7), 40 * i, np.uint8), "L"))
    _save(root / "y" / "deep.tif", Image.fromarray(np.full((5, 7), 65535, np.uint16)))
    ds = load_dataset(root, val_split=0).train
    assert ds.images.shape == (7, 1, 5, 7)  # every image grey -> one channel
    # an EXIF orientation tag is applied: a 7x5 photo tagged "rotate 90" becomes 5 wide, 7 tall
    exif = Image.Exif()
    exif[0x0112] = 6
    root2 = tmp_path / "exif"
    _save(root2 / "a" / "rot.jpg", _rgb(2, size=(7, 5)), exif=exif.tobytes())
    _save(root2 / "a" / "plain.jpg", _rgb(3, size=(5, 7)))
    assert load_dataset(root2, val_split=0).train.images.shape == (2, 3, 7, 5)


def test_image_folder_sizes_lazy_and_resized(tmp_path):
    root = tmp_path / "photos"
    _save(root / "a" / "wide.png", Image.fromarray(np.tile(np.arange(40, dtype=np.uint8)[None, :, None] * 6, (20, 1, 3))))
    _save(root / "a" / "tall.jpg", _rgb(4, size=(24, 30)))
    _save(root / "b" / "square.png", _rgb(5, size=(16, 16)))
    ds = load_dataset(root, val_split=0).train
    assert ds.images is None and len(ds) == 3 and ds.labels.tolist() == [0, 0, 1]  # lazy: native sizes
    assert ds[0][0].shape == (3, 30, 24) and ds[1][0].shape == (3, 20, 40) and ds[1][0].dtype == torch.uint8
    sized = load_dataset(root, val_split=0, image_size=16).train
    assert sized.images.shape == (3, 3, 16, 16)
    # shorter side to 16 (40x20 -> 32x16), then the centre 16 columns: the ramp's middle
    wide = sized.images[1, 0].float()
    assert (wide[:, 1:] > wide[:, :-1]).all() and 80 < wide.mean() < 160
    # a tree too large for memory is decoded per item
    folder_limit = folder.MAX_MEMORY_BYTES
    try:
        folder.MAX_MEMORY_BYTES = 100
        assert load_dataset(root, val_split=0, image_size=16).train.images is None
    finally:
        folder.MAX_MEMORY_BYTES = folder_limit
    tf = build_transform(False, 24, (0.5,) * 3, (0.5,) * 3)
    assert tf(ds[0][0]).shape == (3, 24, 24) and ds.channels == 3
    # DataLoader workers receive lazy datasets by pickling: the decoder travels with them
    copy = pickle.loads(pickle.dumps(ds))
    assert torch.equal(copy[1][0], ds[1][0])


# ---------------------------------------------------------------- ImageFolder trees: bad files


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` pixels and holds almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _good_tree(root: Path) -> Path:
    for c in ("cat", "dog"):
        for i in range(3):
            _save(root / c / f"{i}.png", _rgb(10 * i + len(c), size=(8, 8)))
    return root


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    _rgb(7, size=(64, 64)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


BAD_FILES = {
    "corrupt.jpg": lambda: b"\xff\xd8\xff\xe0" + bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)),
    "truncated.jpg": lambda: _jpeg_bytes()[: len(_jpeg_bytes()) // 2],
    "empty.png": lambda: b"",
    "notes.png": lambda: b"this is a text file, not an image\n" * 10,
    "bomb.png": lambda: _png_header(100_000, 100_000),
}
REASONS = {
    "corrupt.jpg": "corrupt|truncated|identify",
    "truncated.jpg": "truncated",
    "empty.png": "empty file",
    "notes.png": "not an image",
    "bomb.png": "decompression-bomb",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_image_folder_bad_file(tmp_path, name):
    root = _good_tree(tmp_path / "tree")
    bad = root / "dog" / name
    bad.write_bytes(BAD_FILES[name]())
    with pytest.raises(ValueError, match=REASONS[name]) as e:
        load_dataset(root)
    assert str(bad) in str(e.value)
    with pytest.warns(UserWarning, match="skipped 1 bad"):
        s = load_dataset(root, skip_bad=True, val_split=0)
    assert s.bad_files == [(str(bad), s.bad_files[0][1])] and len(s.train) == 6
    assert s.train.images.shape == (6, 3, 8, 8)


def test_image_folder_bomb_guard_limit(tmp_path, monkeypatch):
    root = _good_tree(tmp_path / "tree")
    monkeypatch.setattr(folder, "MAX_IMAGE_PIXELS", 63)
    with pytest.raises(ValueError, match=r"8x8 = 64 pixels is over the limit of 63 \(decompression-bomb guard\)"):
        load_dataset(root)


def test_image_folder_truncated_file_in_lazy_tree(tmp_path):
    root = _good_tree(tmp_path / "tree")
    _save(root / "cat" / "0big.png", _rgb(1, size=(12, 10)))  # a second size: decode per item
    (root / "dog" / "9cut.jpg").write_bytes(_jpeg_bytes()[:1200])  # header intact, pixel data cut
    # every file is decoded when the tree is loaded, so the cut file is named before training starts
    with pytest.raises(ValueError, match="9cut.jpg.*truncated"):
        load_dataset(root, val_split=0)


def test_image_folder_bad_class_folders(tmp_path):
    root = _good_tree(tmp_path / "tree")
    (root / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: empty class folder"):
        load_dataset(root)
    with pytest.warns(UserWarning, match="skipped 1 bad"):
        s = load_dataset(root, skip_bad=True, val_split=0)
    assert s.class_names == ["cat", "dog"] and s.bad_files == [(str(root / "empty"), "empty class folder")]
    (root / "empty").rmdir()
    (root / "docs").mkdir()
    (root / "docs" / "README.txt").write_text("not images")
    (root / "docs" / "labels.csv").write_text("a,b")
    with pytest.raises(ValueError, match=r"docs: class folder has no image files \(only README.txt, labels.csv\)"):
        load_dataset(root)
    with pytest.warns(UserWarning):
        assert load_dataset(root, skip_bad=True).class_names == ["cat", "dog"]


def test_image_folder_drops_a_class_whose_every_file_is_unreadable(tmp_path):
    root = _good_tree(tmp_path / "tree")
    (root / "ant").mkdir()
    (root / "ant" / "0.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="0.jpg"):
        load_dataset(root, val_split=0)
    with pytest.warns(UserWarning, match="skipped 2 bad"):
        s = load_dataset(root, skip_bad=True, val_split=0)
    plain = load_dataset(_good_tree(tmp_path / "plain"), val_split=0).train
    assert s.class_names == ["cat", "dog"]  # no class is left without an image
    assert torch.equal(s.train.labels, plain.labels)
    assert [b[0] for b in s.bad_files] == [str(root / "ant" / "0.jpg"), str(root / "ant")]


def test_image_folder_ignores_hidden_and_other_files(tmp_path):
    root = _good_tree(tmp_path / "tree")
    (root / "cat" / ".DS_Store").write_bytes(b"\0\1")
    (root / "cat" / "._0.png").write_bytes(b"resource fork")
    (root / "dog" / "info.txt").write_text("x")
    (root / ".git").mkdir()
    with pytest.warns(UserWarning, match=r"ignored 1 files that are not images by extension: 1 \.txt"):
        s = load_dataset(root, val_split=0)
    assert s.class_names == ["cat", "dog"] and len(s.train) == 6
    with pytest.raises(ValueError, match="no class folders"):
        load_dataset(root / "cat")
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "missing")


def test_image_folder_split_folders(tmp_path):
    _good_tree(tmp_path / "ds" / "train")
    _good_tree(tmp_path / "ds" / "test")
    (tmp_path / "ds" / "test" / "dog" / "0.png").unlink()
    assert len(load_dataset(tmp_path / "ds", subset="test", val_split=0).train) == 5
    assert len(load_dataset(tmp_path / "ds", val_split=0).train) == 6
    assert len(load_dataset(tmp_path / "ds", subset="val", val_split=0).train) == 5  # no val/: test/
    with pytest.raises(ValueError, match=r"holds the splits \['test', 'train'\], not 'extra'"):
        load_dataset(tmp_path / "ds", subset="extra")
    (tmp_path / "ds" / "validation").mkdir()
    _good_tree(tmp_path / "ds" / "validation")
    assert len(load_dataset(tmp_path / "ds", subset="val", val_split=0).train) == 6
    # a tree without split folders is the same whatever the subset (e.g. a separate validation tree)
    assert len(load_dataset(tmp_path / "ds" / "test", subset="val", val_split=0).train) == 5


# ---------------------------------------------------------------- CIFAR python batches


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _py2_string(b: bytes) -> bytes:
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<I", len(b)) + b)


def _py2_pickle(entries: dict[bytes, object]) -> bytes:
    """A protocol-2 pickle as Python 2's cPickle wrote the original CIFAR files: ``str`` values
    as (SHORT_)BINSTRING and numpy arrays through ``numpy.core.multiarray._reconstruct``."""
    out = [b"\x80\x02}("]
    for key, value in entries.items():
        out.append(_py2_string(key))
        if isinstance(value, np.ndarray):
            n, m = value.shape
            out += [b"cnumpy.core.multiarray\n_reconstruct\n", b"cnumpy\nndarray\n", b"K\x00\x85", _py2_string(b"b"),
                    b"\x87R(K\x01", b"J" + struct.pack("<i", n), b"J" + struct.pack("<i", m), b"\x86",
                    b"cnumpy\ndtype\n", _py2_string(b"u1"), b"K\x00K\x01\x87R",
                    b"(K\x03", _py2_string(b"|"), b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
                    b"\x89", _py2_string(value.tobytes()), b"tb"]
        else:  # a list of ints or of byte strings
            out.append(b"](")
            for v in value:
                out.append(_py2_string(v) if isinstance(v, bytes) else b"J" + struct.pack("<i", v))
            out.append(b"e")
    out.append(b"u.")
    return b"".join(out)


def _cifar10(root: Path, n=(30, 30), n_test=12, writer=None, bad_label=None) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write = writer or (lambda path, obj: path.write_bytes(_py2_pickle(obj)))
    write(d / "batches.meta", {b"label_names": [c.encode() for c in CIFAR10_NAMES], b"num_vis": [3072]})
    for i, k in enumerate(n, 1):
        labels = [int(x) for x in np.arange(k) % 10]
        if bad_label is not None and i == 2:
            labels[5] = bad_label
        write(d / f"data_batch_{i}", {b"data": rng.integers(0, 256, (k, 3072), dtype=np.uint8), b"labels": labels})
    write(d / "test_batch", {b"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8),
                             b"labels": [int(x) for x in np.arange(n_test) % 10]})
    return d


def test_cifar10_python2_batches(tmp_path):
    d = _cifar10(tmp_path)
    s = load_dataset(tmp_path, val_split=0.2, seed=0)  # the parent of cifar-10-batches-py works too
    assert s.class_names == CIFAR10_NAMES and len(s.train) == 50 and len(s.val) == 10  # 6 per class, 1 held out
    full = load_dataset(d, val_split=0).train
    raw = pickle.loads((d / "data_batch_2").read_bytes(), encoding="bytes")  # our own file: safe to unpickle here
    assert torch.equal(full.images[30:], torch.from_numpy(raw[b"data"]).view(-1, 3, 32, 32))
    assert full.labels[30:].tolist() == raw[b"labels"]
    test = load_dataset(d, subset="test", val_split=0).train
    assert len(test) == 12 and test.images.dtype == torch.uint8
    assert torch.equal(load_dataset(d, subset="val", val_split=0).train.images, test.images)  # no val set: test
    with pytest.raises(ValueError, match="subsets 'train' and 'test'"):
        load_dataset(d, subset="extra")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar100_python3_pickles(tmp_path, protocol):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    dump = lambda name, obj: (d / name).write_bytes(pickle.dumps(obj, protocol=protocol))
    fine = [f"class{i}".encode() for i in range(100)]
    dump("meta", {b"fine_label_names": fine, b"coarse_label_names": [b"c"] * 20})
    rng = np.random.default_rng(1)
    for name, n in (("train", 200), ("test", 50)):
        dump(name, {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                    b"fine_labels": list(np.arange(n, dtype=np.int64) % 100), b"coarse_labels": [0] * n})
    s = load_dataset(d, val_split=0)
    assert len(s.class_names) == 100 and s.class_names[7] == "class7" and len(s.train) == 200
    assert len(load_dataset(d, subset="test", val_split=0).train) == 50


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", ["system", "object_array"])
def test_cifar_refuses_unsafe_pickles(tmp_path, payload):
    marker = tmp_path / "pwned"

    def writer(path, obj):
        if path.name == "data_batch_1":
            obj = dict(obj)
            if payload == "system":
                obj[b"labels"] = _Evil(marker)
            else:
                obj[b"labels"] = np.array([1, "two"], dtype=object)
        path.write_bytes(pickle.dumps(obj, protocol=2))

    d = _cifar10(tmp_path, writer=writer)
    with pytest.raises(ValueError, match="data_batch_1: not a readable CIFAR batch") as e:
        load_dataset(d)
    assert ("posix.system" in str(e.value) or "os.system" in str(e.value)) if payload == "system" else "object" in str(e.value)
    assert not marker.exists()


def test_cifar_label_outside_classes(tmp_path):
    d = _cifar10(tmp_path, bad_label=10)
    with pytest.raises(ValueError, match=r"data_batch_2: label 10 of item 5 is outside the 10 classes"):
        load_dataset(d)
    with pytest.warns(UserWarning, match="skipped 1 bad"):
        s = load_dataset(d, skip_bad=True, val_split=0)
    assert len(s.train) == 59 and s.bad_files == [(f"{d / 'data_batch_2'}#5", "label 10 outside the 10 classes")]


# ---------------------------------------------------------------- MNIST / Fashion-MNIST IDX files


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + array.astype(np.uint8).tobytes()


def _mnist(d: Path, n=40, n_test=20, gz=False, labels=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, k in (("train", n), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (k, 28, 28), dtype=np.uint8)
        lab = np.arange(k) % 10 if labels is None or prefix == "t10k" else labels
        for kind, arr, nd in (("images", imgs, 3), ("labels", lab, 1)):
            name, data = f"{prefix}-{kind}-idx{nd}-ubyte", _idx(arr)
            if gz:
                (d / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (d / name).write_bytes(data)
    return d


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    d = _mnist(tmp_path / "mnist", gz=gz)
    s = load_dataset(d, val_split=0.25)
    assert s.class_names == [str(i) for i in range(10)] and len(s.train) == 30 and len(s.val) == 10
    full = load_dataset(d, val_split=0).train
    raw = (d / ("train-images-idx3-ubyte" + (".gz" if gz else "")))
    raw = gzip.decompress(raw.read_bytes()) if gz else raw.read_bytes()
    assert full.images.shape == (40, 1, 28, 28)
    assert torch.equal(full.images.flatten(), torch.frombuffer(bytearray(raw[16:]), dtype=torch.uint8))
    assert len(load_dataset(d, subset="test", val_split=0).train) == 20
    fashion = _mnist(tmp_path / "fashion-mnist", gz=gz)
    assert load_dataset(fashion).class_names[9] == "Ankle boot"
    (fashion / "classes.txt").write_text("\n".join(f"k{i}" for i in range(10)))
    assert load_dataset(fashion).class_names[0] == "k0"


def test_mnist_idx_errors(tmp_path):
    d = _mnist(tmp_path / "a", labels=np.array([3] * 39 + [12]))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: label 12 of item 39 is outside the 10 classes"):
        load_dataset(d)
    with pytest.warns(UserWarning):
        s = load_dataset(d, skip_bad=True, val_split=0)
    assert len(s.train) == 39 and s.bad_files[0][0].endswith("train-labels-idx1-ubyte#39")
    d = _mnist(tmp_path / "b")
    f = d / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: truncated"):
        load_dataset(d)
    f.write_bytes(b"\x00\x00\x08\x01" + f.read_bytes()[4:])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: expected unsigned bytes in 3 dimensions"):
        load_dataset(d)
    f.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: not an IDX file"):
        load_dataset(d)
    d = _mnist(tmp_path / "c")
    (d / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.zeros(19)))
    with pytest.raises(ValueError, match="has 20 images but .* has 19 labels"):
        load_dataset(d, subset="test")
    # two candidate files for one slot: an error naming both, not a silent pick
    (d / "test-labels-idx1-ubyte").write_bytes(_idx(np.zeros(20)))
    with pytest.raises(ValueError, match="two test labels files, t10k-labels-idx1-ubyte and test-labels-idx1-ubyte"):
        load_dataset(d, subset="test")
