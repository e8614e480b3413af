"""Style transfer: the optimisation method of Gatys et al. (CVPR 2016) and the feed-forward
transformer net of Johnson et al. (ECCV 2016), both on perceptual features of any zoo backbone.

* :mod:`.perceptual` — the frozen perceptual network (any classifier through the backbone
  contract; VGG layers by their papers' names), Gram matrices and the losses;
* :mod:`.gatys` — optimise the picture itself;
* :mod:`.transformer_net` — the registered ``johnson_transformer_net``;
* :mod:`.train` — train it for one style, checkpointed and resumable; apply it;
* :mod:`.images` — image files and scikit-image's built-in photos.

``archzoo stylize`` (:mod:`archzoo.cli.stylize`) runs all three.
"""

from .gatys import GatysConfig, stylize
from .perceptual import (
           LossWeights,
           PerceptualNet,
           StyleLoss,
           gram_matrix,
           total_variation,
)
from .train import StyleTrainConfig, StyleTrainer, apply_model, train_style

__all__ = ["GatysConfig", "LossWeights", "PerceptualNet", "StyleLoss", "StyleTrainConfig", "StyleTrainer", "apply_model",
           "gram_matrix", "stylize", "total_variation", "train_style"]
