"""Necks: turn a backbone's feature maps (known only by their channel list) into the maps a
detection head reads. ``FPN`` (feature pyramid, Lin et al. 2017)."""

from .fpn import FPN

__all__ = ["FPN"]
