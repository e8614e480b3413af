"""archzoo: the zoo of classic computer-vision networks, built from one vocabulary of blocks.

    import archzoo
    archzoo.list_models("resnet*")
    model = archzoo.create_model("resnet50", num_classes=10)
    archzoo.model_card("seresnext50_32x4d")
"""

from . import explain
from .builder import create_model, load_weights
from .engine import train
from .features import features_from
from .io import load_model, save_model
from .registry import ModelCard, list_models, model_card
from .tricks import TRICKS, get_trick, list_tricks
from .weights import convert_weights

__version__ = "0.1.0"

__all__ = [
    "ModelCard",
    "TRICKS",
    "convert_weights",
    "create_model",
    "explain",
    "features_from",
    "get_trick",
    "list_models",
    "list_tricks",
    "load_model",
    "load_weights",
    "model_card",
    "save_model",
    "train",
]
