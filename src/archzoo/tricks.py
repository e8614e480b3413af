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

# --- multi-branch modules ---------------------------------------------------------------------
_add("inception_module", "Run 1x1, 3x3, 5x5 convolutions and pooling side by side on one input and concatenate them (1x1s reduce width first).",
     "Szegedy et al., Going Deeper with Convolutions (GoogLeNet), arXiv:1409.4842", 2014)
_add("auxiliary_classifier", "Attach small classifiers to intermediate layers and add their weighted losses in training; drop them at inference.",
     "Szegedy et al., Going Deeper with Convolutions (GoogLeNet), arXiv:1409.4842", 2014)
_add("factorized_convolution", "Replace an n x n convolution by a 1 x n then an n x 1 (and a 5x5 by two 3x3): same receptive field, fewer weights.",
     "Szegedy et al., Rethinking the Inception Architecture (Inception-v3), arXiv:1512.00567", 2015)
_add("grid_size_reduction", "Halve the grid with stride-2 convolution branches in parallel with a stride-2 pooling branch, concatenated.",
     "Szegedy et al., Rethinking the Inception Architecture (Inception-v3), arXiv:1512.00567", 2015)
_add("fire_module", "Squeeze the channels with 1x1 convolutions, then expand with 1x1 and 3x3 convolutions side by side, concatenated.",
     "Iandola et al., SqueezeNet, arXiv:1602.07360", 2016)

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
     "Krizhevsky et al. 2012 (AlexNet's two-GPU split); made a design dimension by Xie et al., ResNeXt, arXiv:1611.05431", 2012)
_add("squeeze_excitation", "Gate each channel by a sigmoid of a small MLP applied to its global average (channel attention).",
     "Hu et al., Squeeze-and-Excitation Networks, arXiv:1709.01507", 2017)
_add("deep_stem", "Replace the single 7x7 stem convolution by three 3x3 convolutions.",
     "Szegedy et al., Rethinking the Inception Architecture (Inception-v3), arXiv:1512.00567", 2015)
_add("stochastic_depth", "Randomly drop whole residual branches during training (drop-path); an implicit ensemble of depths.",
     "Huang et al., Deep Networks with Stochastic Depth, arXiv:1603.09382", 2016)

# --- dense, fractal and cross-stage connectivity ---------------------------------------------
_add("dense_concatenation", "Feed each layer the concatenation of all earlier feature maps in its block, so features are reused, not relearned.",
     "Huang et al., Densely Connected Convolutional Networks (DenseNet), arXiv:1608.06993", 2016)
_add("growth_rate", "Each layer of a dense block adds only k new channels (the growth rate); width grows linearly with depth.",
     "Huang et al., Densely Connected Convolutional Networks (DenseNet), arXiv:1608.06993", 2016)
_add("transition_compression", "Between dense blocks a BN-ReLU-1x1 conv shrinks the channels by a factor (0.5) before 2x2 average pooling.",
     "Huang et al., Densely Connected Convolutional Networks (DenseNet), arXiv:1608.06993", 2016)
_add("fractal_expansion", "Grow depth by the rule f_{C+1}(z) = join(f_C(f_C(z)), conv(z)): columns of 1, 2, 4 ... layers merged by element-wise means.",
     "Larsson et al., FractalNet: Ultra-Deep Neural Networks without Residuals, arXiv:1605.07648", 2016)
_add("local_drop_path", "In training, each join drops each of its inputs with a fixed probability, keeping at least one.",
     "Larsson et al., FractalNet: Ultra-Deep Neural Networks without Residuals, arXiv:1605.07648", 2016)
_add("global_drop_path", "In training, some mini-batches run a single randomly chosen column through the whole network.",
     "Larsson et al., FractalNet: Ultra-Deep Neural Networks without Residuals, arXiv:1605.07648", 2016)
_add("cross_stage_partial", "Split a stage's channels in two: one half goes through the blocks, the other skips them; concatenate and fuse with a 1x1.",
     "Wang et al., CSPNet: A New Backbone that can Enhance Learning Capability of CNN, arXiv:1911.11929", 2019)
_add("leaky_relu", "Use max(x, 0.01x) (or another small slope) as the non-linearity, so negative inputs keep a gradient.",
     "Maas et al., Rectifier Nonlinearities Improve Neural Network Acoustic Models (ICML workshop)", 2013)

# --- mobile networks and scaling -------------------------------------------------------------
_add("depthwise_separable_conv", "Factor a convolution into a per-channel kxk depthwise conv and a 1x1 pointwise conv: ~k^2 times cheaper.",
     "Sifre & Mallat 2014; Howard et al., MobileNets, arXiv:1704.04861", 2014)
_add("relu6", "Clip ReLU at 6 (min(max(0, x), 6)): bounded activations that stay robust in low-precision arithmetic.",
     "Krizhevsky, Convolutional Deep Belief Networks on CIFAR-10 (2010); MobileNets, arXiv:1704.04861", 2010)
_add("inverted_residual", "Residual between narrow layers: expand t times with a 1x1, filter depthwise, project back to narrow.",
     "Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, arXiv:1801.04381", 2018)
_add("linear_bottleneck", "No activation after the projection to the narrow width: a non-linearity there destroys information.",
     "Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, arXiv:1801.04381", 2018)
_add("mbconv_se", "MBConv: the inverted residual with squeeze-excitation on its expanded features (the searched mobile block).",
     "Tan et al., MnasNet: Platform-Aware Neural Architecture Search for Mobile, arXiv:1807.11626", 2018)
_add("swish", "Use x * sigmoid(x) (swish / SiLU) as the non-linearity: smooth, non-monotonic, found by activation search.",
     "Ramachandran et al., Searching for Activation Functions, arXiv:1710.05941", 2017)
_add("compound_scaling", "Scale depth, width and resolution together by fixed ratios (alpha^phi, beta^phi, gamma^phi) from one baseline.",
     "Tan & Le, EfficientNet: Rethinking Model Scaling for CNNs, arXiv:1905.11946", 2019)
_add("hard_swish", "Use h-swish(x) = x * relu6(x + 3) / 6, a piecewise-linear swish that is cheap and quantises well on mobile hardware.",
     "Howard et al., Searching for MobileNetV3, arXiv:1905.02244", 2019)
_add("hard_sigmoid_gate", "Gate squeeze-excitation with relu6(x + 3) / 6 instead of a sigmoid, the squeeze a quarter of the expanded width.",
     "Howard et al., Searching for MobileNetV3, arXiv:1905.02244", 2019)
_add("searched_block_table", "Search each block's kernel, expansion, width, SE and activation by platform-aware NAS, then trim widths with NetAdapt against measured latency.",
     "Howard et al., Searching for MobileNetV3, arXiv:1905.02244", 2019)
_add("efficient_last_stage", "Pool before the last 1x1 convolutions: the widest layer runs on a 1x1 vector, not a 7x7 map, cutting the final stage's cost.",
     "Howard et al., Searching for MobileNetV3, arXiv:1905.02244", 2019)
_add("channel_shuffle", "After grouped or split operations, interleave the groups' channels so the next layer mixes information from all of them.",
     "Zhang et al., ShuffleNet: An Extremely Efficient CNN for Mobile Devices, arXiv:1707.01083", 2017)
_add("channel_split", "Split a unit's channels in two: one half passes unchanged, the other goes through an equal-width 1x1-depthwise-1x1 branch; concatenate (no addition, no grouped 1x1s).",
     "Ma et al., ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design, arXiv:1807.11164", 2018)
_add("large_kernel_depthwise", "Use 5x5 instead of 3x3 depthwise kernels: a much larger receptive field for few extra multiply-adds, which detection needs.",
     "Qin et al., ThunderNet (SNet), arXiv:1903.11752", 2019)

# --- residual inception and searched cells ---------------------------------------------------
_add("residual_inception", "Project an Inception block's concatenated branches back to the input width, scale by 0.1-0.3 and add the input.",
     "Szegedy et al., Inception-v4, Inception-ResNet and the Impact of Residual Connections, arXiv:1602.07261", 2016)
_add("searched_cells", "Search a small cell (normal and reduction) of operations on two inputs, then stack copies of it into the network.",
     "Zoph et al., Learning Transferable Architectures for Scalable Image Recognition (NASNet), arXiv:1707.07012", 2017)

# --- object detection -------------------------------------------------------------------------
_add("grid_detection", "Divide the image into an S x S grid; the cell holding an object's centre predicts its boxes, confidences and class in one pass.",
     "Redmon et al., You Only Look Once: Unified, Real-Time Object Detection, arXiv:1506.02640", 2015)
_add("anchor_boxes", "Regress each box as an offset from one of several reference boxes (anchors) of set sizes and aspect ratios tiled over the feature map.",
     "Ren et al., Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks, arXiv:1506.01497", 2015)
_add("non_maximum_suppression", "Of overlapping detections of one class (IoU above a threshold), keep only the highest-scoring one.",
     "Felzenszwalb et al., Object Detection with Discriminatively Trained Part-Based Models, TPAMI", 2010)
_add("multiscale_default_boxes", "Predict from several feature maps of decreasing resolution, each with default boxes of its own scale: small objects on fine maps, large on coarse.",
     "Liu et al., SSD: Single Shot MultiBox Detector, arXiv:1512.02325", 2015)
_add("l2_normalization", "Scale each position's feature vector to unit length, then by a learned per-channel factor, so maps of different magnitudes can be combined.",
     "Liu, Rabinovich & Berg, ParseNet: Looking Wider to See Better, arXiv:1506.04579", 2015)
_add("atrous_convolution", "Space a kernel's taps d pixels apart (dilation): a larger field of view at the same resolution and cost.",
     "Chen et al., Semantic Image Segmentation with Deep Convolutional Nets and Fully Connected CRFs (DeepLab), arXiv:1412.7062", 2014)
_add("hard_negative_mining", "Train on all positives but only the highest-loss negatives (at most 3 per positive), so easy background does not swamp the loss.",
     "Liu et al., SSD: Single Shot MultiBox Detector, arXiv:1512.02325", 2015)
_add("feature_pyramid", "Add a top-down path with lateral 1x1 connections so every pyramid level has strong semantics at its own resolution.",
     "Lin et al., Feature Pyramid Networks for Object Detection, arXiv:1612.03144", 2016)
_add("selective_search", "Propose class-agnostic object regions bottom-up: over-segment the image, then greedily merge the most similar neighbours (colour, texture, size, fill), every region of the hierarchy a candidate box.",
     "Uijlings, van de Sande, Gevers & Smeulders, Selective Search for Object Recognition, IJCV", 2013)
_add("region_warping", "Crop each proposal with some context around it, warp it to the CNN's fixed input size whatever its aspect ratio, and run the whole CNN on it: one forward per region.",
     "Girshick et al., Rich feature hierarchies for accurate object detection and semantic segmentation (R-CNN), arXiv:1311.2524", 2014)
_add("region_proposal_network", "Propose object regions from the detector's own feature maps: a small conv head scores anchors as object or not and regresses their boxes; NMS keeps the best as the second stage's proposals.",
     "Ren et al., Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks, arXiv:1506.01497", 2015)
_add("roi_pooling", "Cut each region's features out of the shared map by max pooling it on a fixed grid (e.g. 7x7): regions of any size feed the same FC layers, the CNN runs once per image.",
     "Girshick, Fast R-CNN, arXiv:1504.08083 (after He et al.'s SPP-net, arXiv:1406.4729)", 2015)
_add("roi_align", "Pool region features without rounding: sample each grid cell bilinearly at exact positions and average, so features stay aligned with the region.",
     "He et al., Mask R-CNN, arXiv:1703.06870", 2017)
_add("multi_task_loss", "Train region classification (softmax over classes plus background) and class-specific box regression (smooth L1, positives only) together in one loss.",
     "Girshick, Fast R-CNN, arXiv:1504.08083", 2015)
_add("balanced_sampling", "Learn from a fixed-size mini-batch of regions or anchors with a capped fraction of positives, not from all of them (R-CNN's fine-tuning: 32 positive and 96 background windows; Fast R-CNN: 128 RoIs over two images, a quarter positive; the RPN: 256 anchors, at most half).",
     "Girshick et al., Rich feature hierarchies for accurate object detection and semantic segmentation (R-CNN), arXiv:1311.2524", 2013)
_add("mask_branch", "Add to each region a small FCN that predicts a binary mask per class on RoIAlign features; only the true class's mask is trained (no competition between classes).",
     "He et al., Mask R-CNN, arXiv:1703.06870", 2017)
_add("position_sensitive_roi_pooling", "Give each of a region's k x k cells its own group of channels and pool each cell only from its group: the map encodes where in the object a position lies, so little computation is left per region.",
     "Dai et al., R-FCN: Object Detection via Region-based Fully Convolutional Networks, arXiv:1605.06409", 2016)
_add("thin_feature_map", "Make the map the RoIs are pooled from thin (alpha x k x k channels, e.g. 10 x 7 x 7) and follow the pooling with one small FC layer: a light detection head whose cost barely grows with the number of regions.",
     "Li et al., Light-Head R-CNN: In Defense of Two-Stage Object Detector, arXiv:1711.07264", 2017)
_add("context_enhancement", "Merge three scales into one detection map: the stride-16 map, the stride-32 map upsampled, and the globally pooled map broadcast, each through a 1x1 conv, summed (a cheap FPN-like context).",
     "Qin et al., ThunderNet: Towards Real-time Generic Object Detection on Mobile Devices, arXiv:1903.11752", 2019)
_add("spatial_attention_module", "Re-weight the detection map by a sigmoid of a 1x1 conv of the RPN's hidden features: the RPN, trained to tell objects from background, highlights foreground positions for the RoI head.",
     "Qin et al., ThunderNet: Towards Real-time Generic Object Detection on Mobile Devices, arXiv:1903.11752", 2019)
_add("focal_loss", "Scale the cross entropy by (1 - p_t)^gamma so well-classified (mostly background) anchors contribute little: dense one-stage training works.",
     "Lin et al., Focal Loss for Dense Object Detection (RetinaNet), arXiv:1708.02002", 2017)
_add("group_norm", "Normalise over groups of channels within each sample: statistics that do not depend on the batch size.",
     "Wu & He, Group Normalization, arXiv:1803.08494", 2018)
_add("anchor_free", "Predict boxes from points (distances to the four sides, or centre and size) instead of offsets from anchor boxes.",
     "Tian et al., FCOS: Fully Convolutional One-Stage Object Detection, arXiv:1904.01355", 2019)
_add("centerness", "Predict how close a location is to its object's centre and multiply it into the score, suppressing boxes from off-centre locations.",
     "Tian et al., FCOS: Fully Convolutional One-Stage Object Detection, arXiv:1904.01355", 2019)
_add("iou_loss", "Regress boxes with a loss on their overlap (IoU, GIoU, CIoU) rather than on coordinates independently.",
     "Rezatofighi et al., Generalized Intersection over Union, arXiv:1902.09630", 2019)
_add("objects_as_points", "Detect an object as the peak of a per-class centre heatmap, regressing its size and offset there; 3x3 max-pool peaks replace NMS.",
     "Zhou et al., Objects as Points (CenterNet), arXiv:1904.07850", 2019)
_add("deconvolution_upsampling", "Recover resolution with learned transposed convolutions (stride 2) after the backbone.",
     "Noh, Hong & Han, Learning Deconvolution Network for Semantic Segmentation, arXiv:1505.04366", 2015)
_add("spatial_pyramid_pooling", "Pool a map with several window sizes and concatenate the results: context at several scales for any input size (SPPF chains three 5x5 pools).",
     "He et al., Spatial Pyramid Pooling in Deep Convolutional Networks for Visual Recognition, arXiv:1406.4729", 2014)
_add("path_aggregation", "After the top-down pyramid, add a bottom-up path so fine localisation reaches the coarse levels quickly.",
     "Liu et al., Path Aggregation Network for Instance Segmentation (PANet), arXiv:1803.01534", 2018)
_add("weighted_bifpn", "Repeat top-down and bottom-up fusion, each node a learned, normalised weighted sum of its inputs (BiFPN).",
     "Tan et al., EfficientDet: Scalable and Efficient Object Detection, arXiv:1911.09070", 2019)
_add("decoupled_head", "Separate branches for classification and box regression instead of one shared head.",
     "Ge et al., YOLOX: Exceeding YOLO Series in 2021, arXiv:2107.08430", 2021)
_add("task_aligned_assignment", "Pick positives by a score combining classification confidence and IoU (s^alpha * u^beta), aligning the two tasks.",
     "Feng et al., TOOD: Task-aligned One-stage Object Detection, arXiv:2108.07755", 2021)
_add("distribution_focal_loss", "Predict each box side as a discrete distribution over distances, trained to concentrate on the two bins around the target.",
     "Li et al., Generalized Focal Loss, arXiv:2006.04388", 2020)
_add("anchor_refinement", "Refine anchors in two steps: a first head filters easy negatives (binary objectness) and coarsely regresses the anchors; a second classifies and regresses from the refined anchors, fed by a top-down pyramid.",
     "Zhang et al., Single-Shot Refinement Neural Network for Object Detection (RefineDet), arXiv:1711.06897", 2017)
_add("scale_permuted_backbone", "Let a backbone's blocks change scale in any order and read two earlier blocks of any scale (resampled), so one network gives the multi-scale pyramid without a decoder; the order and connections are searched.",
     "Du et al., SpineNet: Learning Scale-Permuted Backbone for Recognition and Localization, arXiv:1912.05027", 2019)

# --- semantic segmentation (U-Net, DeepLab, LR-ASPP) ---------------------------------------------
_add("encoder_decoder_skips", "Mirror the downsampling encoder with an upsampling decoder and feed each decoder level the encoder's map of the same resolution (concatenated): context from the deep path, localisation from the skips.",
     "Ronneberger, Fischer & Brox, U-Net, arXiv:1505.04597", 2015)
_add("crop_and_concatenate", "With unpadded convolutions the encoder's map is larger than the upsampled one: centre-crop it to that size before concatenating.",
     "Ronneberger, Fischer & Brox, U-Net, arXiv:1505.04597", 2015)
_add("overlap_tile", "Segment an image of any size with a net of valid (unpadded) convolutions: mirror the border by the lost margin and cut input tiles whose valid outputs tile the image.",
     "Ronneberger, Fischer & Brox, U-Net, arXiv:1505.04597", 2015)
_add("atrous_separable_convolution", "Make the atrous convolutions of ASPP and the decoder depthwise-separable (a dilated depthwise kxk, then a pointwise 1x1): the same field of view for a fraction of the cost.",
     "Chen et al., Encoder-Decoder with Atrous Separable Convolution (DeepLabV3+), arXiv:1802.02611", 2018)
_add("fully_convolutional", "Replace fully-connected layers by convolutions so the net maps any image size to a map of per-pixel class scores, upsampled to the input.",
     "Long et al., Fully Convolutional Networks for Semantic Segmentation, arXiv:1411.4038", 2014)
_add("atrous_spatial_pyramid_pooling", "Run parallel atrous convolutions with several rates on one map and fuse them: context at several scales without pooling.",
     "Chen et al., DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs, arXiv:1606.00915", 2016)
_add("image_pooling", "Add a branch that pools the whole map to one vector and broadcasts it back, so every position sees image-level context.",
     "Liu et al., ParseNet: Looking Wider to See Better, arXiv:1506.04579", 2015)
_add("lite_reduced_aspp", "Lite R-ASPP: a 1x1 conv branch gated per channel by a pooled sigmoid branch, classified and added to a classifier of a finer map.",
     "Howard et al., Searching for MobileNetV3, arXiv:1905.02244", 2019)

# --- semantic segmentation (FCN, SegNet, FC-DenseNet) ----------------------------------------------
_add("bilinear_deconvolution", "Upsample class scores inside the net with a transposed convolution (stride f, kernel 2f) initialised to bilinear interpolation and learned end to end.",
     "Long et al., Fully Convolutional Networks for Semantic Segmentation, arXiv:1411.4038", 2014)
_add("skip_fusion", "Score shallower, finer layers too (1x1 convs, zero-initialised) and add them to the upsampled deep scores: coarse semantics refined by fine location (FCN-16s/8s).",
     "Long et al., Fully Convolutional Networks for Semantic Segmentation, arXiv:1411.4038", 2014)
_add("pooling_indices_unpooling", "Remember where each max-pooling window's maximum was and upsample in the mirrored decoder by putting each value back there (zeros elsewhere): sharp boundaries, no learned upsampling, no stored encoder maps.",
     "Badrinarayanan et al., SegNet, arXiv:1511.00561 (the 'switches' of Zeiler & Fergus, arXiv:1311.2901)", 2015)
_add("dense_upsampling_path", "In the upsampling path of a fully convolutional DenseNet, upsample (transposed conv) only the maps the last dense block created, not its input, so widths stay bounded at full resolution.",
     "Jegou et al., The One Hundred Layers Tiramisu (FC-DenseNet), arXiv:1611.09326", 2016)

# --- spiking networks (snntorch) ------------------------------------------------------------------
_add("leaky_integrate_and_fire", "Replace the activation by a neuron with a membrane that leaks (u <- beta*u + input), fires a binary spike when it crosses a threshold and is reset by subtraction: computation in discrete events over time steps.",
     "Lapicque 1907, Recherches quantitatives sur l'excitation electrique des nerfs; in deep learning form Eshraghian et al., Training Spiking Neural Networks Using Lessons From Deep Learning, arXiv:2109.12894", 1907)
_add("surrogate_gradient", "Train through the spike's step function by backpropagating a smooth stand-in for its derivative (fast sigmoid, arctan), with backpropagation through time.",
     "Neftci, Mostafa & Zenke, Surrogate Gradient Learning in Spiking Neural Networks, arXiv:1901.09948 (SuperSpike: Zenke & Ganguli, arXiv:1705.11146)", 2019)
_add("spike_coding", "Feed a static image to a spiking net as spikes over time: rate coding (each pixel fires with probability = intensity each step), latency coding (brighter fires earlier, once), or direct coding (the analog image as a constant current).",
     "Eshraghian et al., Training Spiking Neural Networks Using Lessons From Deep Learning, arXiv:2109.12894", 2021)

# --- the deformable part model (not a neural network) ---------------------------------------------
_add("hog_features", "Describe an image by histograms of oriented gradients in small cells (8 px), contrast-normalised over blocks of cells, computed over a pyramid of scales.",
     "Dalal & Triggs, Histograms of Oriented Gradients for Human Detection, CVPR 2005", 2005)
_add("deformable_parts", "Score an object as a coarse root template plus part templates at twice its resolution, each free to move from its anchor at a learnt quadratic cost (dx, dy, dx^2, dy^2).",
     "Felzenszwalb, Girshick, McAllester & Ramanan, Object Detection with Discriminatively Trained Part Based Models, TPAMI 2010", 2010)
_add("distance_transform", "Find every anchor's best part placement at once with a generalized distance transform: the lower envelope of parabolas, linear time per row and column.",
     "Felzenszwalb & Huttenlocher, Distance Transforms of Sampled Functions, 2004 (used by Felzenszwalb et al., TPAMI 2010)", 2004)
_add("latent_svm", "Train a linear SVM whose positives pick their own latent placement (component, scale, part positions) under the current model, alternating relabelling and convex SVM fits.",
     "Felzenszwalb, Girshick, McAllester & Ramanan, Object Detection with Discriminatively Trained Part Based Models, TPAMI 2010", 2010)

# --- super-resolution (SRDenseNet) ---------------------------------------------------------------
_add("post_upsampling", "Extract features at the low input resolution and enlarge only at the end of the net with learned transposed convolutions, so the deep part costs scale^2 less than on a pre-upsampled image.",
     "Dong, Loy & Tang, Accelerating the Super-Resolution Convolutional Neural Network (FSRCNN), arXiv:1608.00367", 2016)
_add("dense_skip_connections", "Feed every block the low-level features and the outputs of all earlier blocks, and concatenate them all (through a 1x1 bottleneck) for the reconstruction: dense connectivity between blocks, not only inside them.",
     "Tong, Li, Liu & Gao, Image Super-Resolution Using Dense Skip Connections (SRDenseNet), ICCV 2017", 2017)

# --- graph networks on superpixel graphs (archzoo.graph) ----------------------------------------
_add("superpixel_graph", "Treat an image as a graph: superpixels (SLIC) are the nodes, with their mean colour, position and size as features; touching (or nearest) superpixels are joined by edges, so a graph network classifies it.",
     "Monti et al., Geometric Deep Learning on Graphs and Manifolds Using Mixture Model CNNs (MoNet), arXiv:1611.08402", 2016)
_add("message_passing", "Update every node from messages computed along its edges and aggregated by a permutation-invariant sum or mean; a readout pools the nodes into one vector for the whole graph.",
     "Gilmer et al., Neural Message Passing for Quantum Chemistry, arXiv:1704.01212", 2017)
_add("graph_convolution", "Give each node the degree-normalised sum of its neighbours' (and its own) linearly transformed features: a first-order approximation of a spectral graph filter.",
     "Kipf & Welling, Semi-Supervised Classification with Graph Convolutional Networks, arXiv:1609.02907", 2016)
_add("graph_attention", "Weigh each neighbour's message by a learned attention score (softmax over the neighbourhood), in several heads whose outputs are concatenated.",
     "Velickovic et al., Graph Attention Networks, arXiv:1710.10903", 2017)
_add("edge_gating", "Multiply each neighbour's message by a learned sigmoid gate computed from both nodes (and the edge's features), with a residual connection: soft, anisotropic edge weights.",
     "Bresson & Laurent, Residual Gated Graph ConvNets, arXiv:1711.07553", 2017)

# --- image captioning (Show, Attend and Tell; archzoo.captioning) ---------------------------------
_add("recurrent_decoder", "Turn an image into a sentence with a recurrent network (LSTM, GRU or a plain RNN) that emits one word per step, fed the previous word and conditioned on the image's features (its first state computed from them).",
     "Vinyals et al., Show and Tell: A Neural Image Caption Generator, arXiv:1411.4555", 2014)
_add("soft_attention", "At every step, score each location of the feature map against the decoder's state with a small MLP (additive attention), softmax the scores over the locations and feed the weighted mean of the features (the context vector) to the step: the decoder looks where the next word is.",
     "Bahdanau, Cho & Bengio, Neural Machine Translation by Jointly Learning to Align and Translate, arXiv:1409.0473", 2014)
_add("doubly_stochastic_attention", "Penalise (1 - sum over steps of each location's attention)^2 so every part of the image is attended about once over the sentence, and scale the context by a gate beta = sigmoid(f(h)) the decoder learns, so it can decide how much to look.",
     "Xu et al., Show, Attend and Tell: Neural Image Caption Generation with Visual Attention, arXiv:1502.03044", 2015)
_add("teacher_forcing", "Train a sequence generator on the true previous word at every step (not its own guess): every step's loss is computed in one pass, at the price of a train/test mismatch.",
     "Williams & Zipser, A Learning Algorithm for Continually Running Fully Recurrent Neural Networks, Neural Computation 1989", 1989)
_add("beam_search", "Decode by keeping the k most probable partial sentences at every step (extending each by every word and keeping the k best by summed log-probability) instead of only the single best word: an approximate search for the most probable sentence.",
     "Sutskever, Vinyals & Le, Sequence to Sequence Learning with Neural Networks, arXiv:1409.3215 (beam search: Lowerre 1976)", 2014)

# --- style transfer (archzoo.style) ---------------------------------------------------------------
_add("gram_matrix_style_loss", "Describe a picture's style by the Gram matrices of a network's feature maps (which channels fire together, summed over positions: texture without layout) and match them with a squared error.",
     "Gatys, Ecker & Bethge, A Neural Algorithm of Artistic Style, arXiv:1508.06576 (CVPR 2016: Image Style Transfer Using Convolutional Neural Networks)", 2015)
_add("perceptual_loss", "Train an image-to-image network with losses measured in a fixed pretrained network's feature space (feature and Gram-matrix differences) instead of per-pixel errors.",
     "Johnson, Alahi & Fei-Fei, Perceptual Losses for Real-Time Style Transfer and Super-Resolution, arXiv:1603.08155", 2016)
_add("instance_norm", "Normalise each channel of each sample over its own spatial positions (no batch statistics, the same in training and inference): removes instance-specific contrast.",
     "Ulyanov, Vedaldi & Lempitsky, Instance Normalization: The Missing Ingredient for Fast Stylization, arXiv:1607.08022", 2016)
