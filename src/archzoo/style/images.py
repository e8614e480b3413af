"""Pictures for style transfer: image files or built-in photos (scikit-image's sample images, shipped
inside the package: nothing is downloaded), as float tensors ``[3, H, W]`` in 0..1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..validate import UserError, check_input_files, shown

MIN_SIDE = 32  # the default VGG perceptual net pools 4 times before relu5_1: smaller pictures have no texture left
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm")

# name -> skimage.data function; every one is a file inside scikit-image's distribution
BUILTIN_CONTENT = {
    "astronaut": "astronaut", "chelsea": "chelsea", "coffee": "coffee", "rocket": "rocket",
    "camera": "camera", "coins": "coins", "clock": "clock", "moon": "moon",
}
BUILTIN_STYLES = {
    "hubble": "hubble_deep_field", "ihc": "immunohistochemistry", "colorwheel": "colorwheel",
    "retina": "retina", "gravel": "gravel", "brick": "brick", "grass": "grass",
}
BUILTIN = {**BUILTIN_CONTENT, **BUILTIN_STYLES}


def _builtin_array(name: str) -> np.ndarray:
    import skimage.data

    arr = np.asarray(getattr(skimage.data, BUILTIN[name])())
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return arr[..., :3]


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> float ``[3, H, W]`` in 0..1."""
    return torch.from_numpy(np.array(arr, dtype=np.float32)).permute(2, 0, 1).contiguous() / 255.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float ``[3, H, W]`` in 0..1 -> uint8 ``[H, W, 3]``."""
    return (x.detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def read_image(spec: str, arg: str, allow_builtin: bool = True) -> np.ndarray:
    """An image file, else a built-in name -> uint8 RGB ``[H, W, 3]``; errors name ``arg``."""
    path = Path(str(spec)).expanduser()
    if not path.exists() and allow_builtin and spec in BUILTIN:
        arr = _builtin_array(spec)
    else:
        if not path.exists():
            names = f"; built-in pictures: {', '.join(BUILTIN)}" if allow_builtin else ""
            raise UserError(f"{arg}: {shown(spec)!r} is neither an image file nor a built-in picture{names}")
        check_input_files([path], what=arg)
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise UserError(f"{arg}: cannot read {shown(spec)!r} as an image ({e})") from None
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise UserError(f"{arg}: {shown(spec)!r} is {w}x{h} pixels; style transfer needs at least {MIN_SIDE} on each side")
    return arr


def resize_longer(arr: np.ndarray, size: int | None) -> np.ndarray:
    """Resize so the longer side is ``size`` (``None``: unchanged), keeping the aspect ratio."""
    if size is None:
        return arr
    from PIL import Image

    h, w = arr.shape[:2]
    scale = size / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(arr).resize(new, Image.BICUBIC if scale > 1 else Image.LANCZOS))


def resize_shorter(arr: np.ndarray, size: int) -> np.ndarray:
    """Resize so the shorter side is ``size``, keeping the aspect ratio."""
    from PIL import Image

    h, w = arr.shape[:2]
    scale = size / min(h, w)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return np.asarray(Image.fromarray(arr).resize(new, Image.BICUBIC if scale > 1 else Image.LANCZOS))


def load_image(spec: str, arg: str, size: int | None = None) -> torch.Tensor:
    """:func:`read_image` resized (longer side ``size``) -> ``[3, H, W]`` in 0..1."""
    arr = resize_longer(read_image(spec, arg), size)
    if min(arr.shape[:2]) < MIN_SIDE:
        raise UserError(f"{arg}: {shown(spec)!r} at size {size} is {arr.shape[1]}x{arr.shape[0]} pixels; style transfer "
                        f"needs at least {MIN_SIDE} on each side (raise --size)")
    return to_tensor(arr)


def content_images(data: str, arg: str = "--data") -> list[tuple[str, np.ndarray]]:
    """The training photos: ``builtin`` (scikit-image's sample photos) or every image in a folder
    (sorted, recursively). A file that is not an image is refused by name."""
    if data == "builtin" and not Path(data).exists():
        return [(name, _builtin_array(name)) for name in BUILTIN_CONTENT]
    folder = Path(data).expanduser()
    if not folder.exists():
        raise UserError(f"{arg}: {shown(data)!r} does not exist (give a folder of images, or 'builtin' for "
                        "scikit-image's sample photos)")
    if not folder.is_dir():
        raise UserError(f"{arg}: {shown(data)!r} is a file; give a folder of content images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{arg}: {shown(data)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [(str(p), read_image(str(p), f"{arg} {shown(data)}: image", allow_builtin=False)) for p in files]


def save_image(x: torch.Tensor, path: str | Path) -> None:
    """Write ``[3, H, W]`` in 0..1 as a picture (format from the suffix), atomically."""
    from PIL import Image

    from ..checkpoint import atomic_write

    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}.get(
        path.suffix.lower(), "PNG")
    img = Image.fromarray(to_uint8(x))
    atomic_write(path, lambda tmp: img.save(tmp, format=fmt))


def side_by_side(images: list[torch.Tensor], height: int = 256) -> torch.Tensor:
    """Pictures scaled to one height and joined left to right with a white gap."""
    import torch.nn.functional as F

    parts = []
    for x in images:
        h, w = x.shape[-2:]
        parts.append(F.interpolate(x[None], size=(height, max(1, round(w * height / h))), mode="bilinear",
                                   align_corners=False, antialias=True)[0].clamp(0, 1))
        parts.append(torch.ones(3, height, 4))
    return torch.cat(parts[:-1], dim=2)
