"""The trick vocabulary: the reusable ideas every network in the zoo is assembled from.

Each trick has a one-line definition and the paper (and year) that introduced it. Model cards
name their tricks from this table, so ``list_models(trick=...)`` and ``archzoo lineage`` can
show the zoo as a family tree of ideas rather than a pile of unrelated architectures.

A family that introduces a new idea adds it here with ``_add``; names are snake_case and
unique (a duplicate raises at import time).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Trick:
    name: str
    definition: str
    paper: str
    year: int


TRICKS: dict[str, Trick] = {}


def _add(name: str, definition: str, paper: str, year: int) -> None:
    if name in TRICKS:
        raise ValueError(f"trick {name!r} is defined twice")
    TRICKS[name] = Trick(name, definition, paper, year)


def get_trick(name: str) -> Trick:
    try:
        return TRICKS[name]
    except KeyError:
        raise KeyError(f"unknown trick {name!r}; known tricks: {', '.join(sorted(TRICKS))}") from None


def list_tricks() -> list[str]:
    return sorted(TRICKS)


# --- foundations (before 2012) ---------------------------------------------------------------
_add("conv_pool_stack", "Alternate learned convolutions with spatial subsampling so features grow more abstract and coarser.",
     "LeCun et al., Gradient-Based Learning Applied to Document Recognition", 1998)
_add("end_to_end_features", "Learn the feature extractor and the classifier jointly by backpropagation instead of hand-designing features.",
     "LeCun et al., Gradient-Based Learning Applied to Document Recognition", 1998)

# --- the deep learning revival ---------------------------------------------------------------
_add("relu", "Use max(0, x) as the non-linearity: no saturation for positive inputs, so deep nets train much faster.",
     "Krizhevsky et al., ImageNet Classification with Deep Convolutional Neural Networks (AlexNet)", 2012)
_add("dropout", "Randomly zero activations during training so units cannot co-adapt; a cheap ensemble.",
     "Krizhevsky et al. (AlexNet), after Hinton et al. arXiv:1207.0580", 2012)
_add("local_response_norm", "Normalise each activation by the energy of its neighbouring channels (lateral inhibition).",
     "Krizhevsky et al., ImageNet Classification with Deep Convolutional Neural Networks (AlexNet)", 2012)
_add("overlapping_pooling", "Pool with a window larger than its stride (3x3, stride 2) so pooling regions overlap.",
     "Krizhevsky et al., ImageNet Classification with Deep Convolutional Neural Networks (AlexNet)", 2012)
_add("stacked_3x3_convs", "Replace large kernels by stacks of 3x3 convolutions: same receptive field, fewer weights, more non-linearity.",
     "Simonyan & Zisserman, Very Deep Convolutional Networks (VGG), arXiv:1409.1556", 2014)
_add("global_average_pooling", "Average each final feature map to one number instead of flattening into huge fully-connected layers.",
     "Lin et al., Network In Network, arXiv:1312.4400", 2013)
_add("pointwise_conv", "1x1 convolutions mix channels cheaply, e.g. to reduce width before an expensive convolution.",
     "Lin et al., Network In Network, arXiv:1312.4400", 2013)
_add("batch_norm", "Normalise each channel by mini-batch statistics, then scale and shift; allows high learning rates.",
     "Ioffe & Szegedy, Batch Normalization, arXiv:1502.03167", 2015)

# --- residual learning and its descendants ---------------------------------------------------
_add("residual_shortcut", "Add the block's input to its output (y = x + F(x)) so the block learns a residual and gradients flow.",
     "He et al., Deep Residual Learning for Image Recognition, arXiv:1512.03385", 2015)
_add("projection_shortcut", "When shape changes, the shortcut is a strided 1x1 convolution (+ norm) instead of the identity (option B).",
     "He et al., Deep Residual Learning for Image Recognition, arXiv:1512.03385", 2015)
_add("zero_padding_shortcut", "When shape changes, the shortcut subsamples and pads the new channels with zeros: no extra parameters (option A).",
     "He et al., Deep Residual Learning for Image Recognition, arXiv:1512.03385", 2015)
_add("bottleneck", "1x1 reduce, 3x3, 1x1 expand: the expensive 3x3 runs on a quarter of the channels.",
     "He et al., Deep Residual Learning for Image Recognition, arXiv:1512.03385", 2015)
_add("preactivation", "Put norm and activation before each convolution so the shortcut path is a pure identity.",
     "He et al., Identity Mappings in Deep Residual Networks, arXiv:1603.05027", 2016)
_add("widening", "Make residual blocks wider (more channels) instead of the network deeper.",
     "Zagoruyko & Komodakis, Wide Residual Networks, arXiv:1605.07146", 2016)
_add("grouped_conv", "Split channels into groups convolved independently ('cardinality'): more width for the same cost.",
     "Xie et al., Aggregated Residual Transformations (ResNeXt), arXiv:1611.05431", 2016)
_add("squeeze_excitation", "Gate each channel by a sigmoid of a small MLP applied to its global average (channel attention).",
     "Hu et al., Squeeze-and-Excitation Networks, arXiv:1709.01507", 2017)
_add("deep_stem", "Replace the single 7x7 stem convolution by three 3x3 convolutions.",
     "Szegedy et al., Rethinking the Inception Architecture (Inception-v3), arXiv:1512.00567", 2015)
_add("stochastic_depth", "Randomly drop whole residual branches during training (drop-path); an implicit ensemble of depths.",
     "Huang et al., Deep Networks with Stochastic Depth, arXiv:1603.09382", 2016)
