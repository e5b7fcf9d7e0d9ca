"""Default config: every key of the official Mask2Former / MaskFormer configs.

The tree is detectron2's ``get_cfg()`` defaults, plus DeepLab's ``add_deeplab_config`` and
Mask2Former's ``add_maskformer2_config`` (MaskFormer v1's ``add_mask_former_config`` is a subset;
its single v1-only key is added with its v1 default). Any config dumped by the official training
scripts therefore merges without an unknown-key error. Keys that only detectron2's R-CNN / RetinaNet
/ panoptic-FPN models read (RPN, ROI_*, ...) are kept so that such dumps load; this package ignores
them. Keys added by this project are marked ``# [project]``.

Call :func:`get_cfg` for a fresh, mutable copy.
"""
from __future__ import annotations

from .config import CfgNode as CN

__all__ = ["get_cfg"]

# ---------------------------------------------------------------------------------------------
# Root
# ---------------------------------------------------------------------------------------------
_C = CN()

# Version of the config layout (detectron2 uses it to upgrade old configs).
_C.VERSION = 2

# ---------------------------------------------------------------------------------------------
# Model: global
# ---------------------------------------------------------------------------------------------
_C.MODEL = CN()
_C.MODEL.LOAD_PROPOSALS = False
_C.MODEL.MASK_ON = False
_C.MODEL.KEYPOINT_ON = False
_C.MODEL.DEVICE = "cuda"
_C.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
# Checkpoint to load: a local path or a URL such as detectron2://..., https://...
_C.MODEL.WEIGHTS = ""
# Per-channel normalisation, in INPUT.FORMAT channel order (detectron2 defaults are BGR, with
# std folded into MSRA weights; the Mask2Former Base configs set RGB ImageNet mean/std).
_C.MODEL.PIXEL_MEAN = [103.530, 116.280, 123.675]
_C.MODEL.PIXEL_STD = [1.0, 1.0, 1.0]
# [project] Inference precision of the network: "float32", or "bfloat16" / "float16" autocast
# (post-processing stays float32; training uses SOLVER.AMP). See docs/performance.md.
_C.MODEL.PRECISION = "float32"
# [project] CPU inference: the backbone and the pixel decoder's convolutions compute in channels-last
# (NHWC) layout, oneDNN's native one (docs/performance.md); False keeps PyTorch's NCHW. Training
# and GPUs are not affected.
_C.MODEL.CHANNELS_LAST = True
# [project] The same in CPU training (faster for small models such as the shapes recipe's; for
# ResNet-50 no faster and ~4 % more peak RSS: docs/performance.md).
_C.MODEL.CHANNELS_LAST_TRAINING = False
# [project] torch.compile the backbone and the segmentation head (training and inference).
_C.MODEL.COMPILE = False
# [project] torch.compile backend of MODEL.COMPILE ("inductor"; "aot_eager" compiles no kernels).
_C.MODEL.COMPILE_BACKEND = "inductor"

# ---------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------
_C.INPUT = CN()
# Shortest-side resize during training: a choice among the values, or a [min, max] range.
_C.INPUT.MIN_SIZE_TRAIN = (800,)
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"  # "choice" or "range"
_C.INPUT.MAX_SIZE_TRAIN = 1333
# Shortest-side resize at test time (0 disables resizing).
_C.INPUT.MIN_SIZE_TEST = 800
_C.INPUT.MAX_SIZE_TEST = 1333
_C.INPUT.RANDOM_FLIP = "horizontal"  # "horizontal", "vertical" or "none"
# Random crop during training.
_C.INPUT.CROP = CN({"ENABLED": False})
# "relative_range", "relative", "absolute" or "absolute_range"
_C.INPUT.CROP.TYPE = "relative_range"
_C.INPUT.CROP.SIZE = [0.9, 0.9]
# Retry a semantic crop until no single category covers more than this fraction of it (DeepLab).
_C.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0
# Channel order the model expects ("BGR", "RGB", or any PIL mode).
_C.INPUT.FORMAT = "BGR"
_C.INPUT.MASK_FORMAT = "polygon"  # "polygon" or "bitmask"
# Mask(2)Former data pipeline: which dataset mapper builds training samples.
_C.INPUT.DATASET_MAPPER_NAME = "mask_former_semantic"
# SSD-style colour augmentation.
_C.INPUT.COLOR_AUG_SSD = False
# [project] Panoptic / instance training mappers: chance that each thing segment gets a random
# colour (its texture kept; data.transforms.recolor_segments), for data whose object colours are random.
_C.INPUT.THING_RECOLOR_PROB = 0.0
# Pad image and ground truth to a multiple of this in the dataset mapper (-1: no padding).
_C.INPUT.SIZE_DIVISIBILITY = -1
# Large-scale jitter (LSJ) augmentation of the COCO configs.
_C.INPUT.IMAGE_SIZE = 1024
_C.INPUT.MIN_SCALE = 0.1
_C.INPUT.MAX_SCALE = 2.0

# ---------------------------------------------------------------------------------------------
# Video (official add_maskformer2_video_config): clip sampling of the YouTube-VIS mapper.
# The clip-level augmentation modes are values of existing keys: MIN_SIZE_TRAIN_SAMPLING
# "choice_by_clip" / "range_by_clip", RANDOM_FLIP "flip_by_clip".
# ---------------------------------------------------------------------------------------------
# Frames per training clip.
_C.INPUT.SAMPLING_FRAME_NUM = 2
# Frames of a training clip are drawn within +-this many frames of a reference frame.
_C.INPUT.SAMPLING_FRAME_RANGE = 20
# Shuffle the order of the sampled frames.
_C.INPUT.SAMPLING_FRAME_SHUFFLE = False
# Extra clip-level augmentations: any of "brightness", "contrast", "saturation", "rotation".
_C.INPUT.AUGMENTATIONS = []

# ---------------------------------------------------------------------------------------------
# Datasets and data loader
# ---------------------------------------------------------------------------------------------
_C.DATASETS = CN()
# Registered dataset names (merged when several are given).
_C.DATASETS.TRAIN = ()
_C.DATASETS.TEST = ()
# Precomputed proposals (detectron2 R-CNN only).
_C.DATASETS.PROPOSAL_FILES_TRAIN = ()
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN = 2000
_C.DATASETS.PROPOSAL_FILES_TEST = ()
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST = 1000

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
# Batch only images whose aspect ratios are on the same side of 1.
_C.DATALOADER.ASPECT_RATIO_GROUPING = True
# "TrainingSampler", "RepeatFactorTrainingSampler" or "RandomSubsetTrainingSampler"
_C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
# RepeatFactorTrainingSampler: repeat threshold, and whether to use the sqrt of the ratio.
_C.DATALOADER.REPEAT_THRESHOLD = 0.0
_C.DATALOADER.REPEAT_SQRT = True
# Drop training images without instance annotations.
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True
# [project] Training: skip a sample whose image / label file is truncated or corrupt (a WARNING names
# it, with the count skipped so far) instead of stopping. Evaluation and missing files always fail.
_C.DATALOADER.SKIP_CORRUPT_IMAGES = False

# ---------------------------------------------------------------------------------------------
# Backbone
# ---------------------------------------------------------------------------------------------
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "build_resnet_backbone"
# Number of leading stages (stem = 1, res2 = 2, ...) whose parameters are frozen.
_C.MODEL.BACKBONE.FREEZE_AT = 2

# ResNe(X)t
_C.MODEL.RESNETS = CN()
_C.MODEL.RESNETS.DEPTH = 50
_C.MODEL.RESNETS.OUT_FEATURES = ["res4"]
_C.MODEL.RESNETS.NUM_GROUPS = 1  # > 1: ResNeXt
_C.MODEL.RESNETS.NORM = "FrozenBN"  # "FrozenBN", "GN", "SyncBN", "BN"
_C.MODEL.RESNETS.WIDTH_PER_GROUP = 64
# Stride 2 on the 1x1 conv (MSRA weights) instead of the 3x3 conv (torchvision / C2 weights).
_C.MODEL.RESNETS.STRIDE_IN_1X1 = True
_C.MODEL.RESNETS.RES5_DILATION = 1
_C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
_C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64
# [project] Activation checkpointing of the trainable ResNet blocks (training; FrozenBN or GN only).
_C.MODEL.RESNETS.CHECKPOINT = False
# Deformable convolutions per stage (res2..res5).
_C.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, False, False, False]
_C.MODEL.RESNETS.DEFORM_MODULATED = False
_C.MODEL.RESNETS.DEFORM_NUM_GROUPS = 1
# DeepLab backbone options (add_deeplab_config).
_C.MODEL.RESNETS.RES4_DILATION = 1
_C.MODEL.RESNETS.RES5_MULTI_GRID = [1, 2, 4]
_C.MODEL.RESNETS.STEM_TYPE = "deeplab"  # "basic" or "deeplab"

# Swin Transformer (add_maskformer2_config)
_C.MODEL.SWIN = CN()
_C.MODEL.SWIN.PRETRAIN_IMG_SIZE = 224
_C.MODEL.SWIN.PATCH_SIZE = 4
_C.MODEL.SWIN.EMBED_DIM = 96
_C.MODEL.SWIN.DEPTHS = [2, 2, 6, 2]
_C.MODEL.SWIN.NUM_HEADS = [3, 6, 12, 24]
_C.MODEL.SWIN.WINDOW_SIZE = 7
_C.MODEL.SWIN.MLP_RATIO = 4.0
_C.MODEL.SWIN.QKV_BIAS = True
_C.MODEL.SWIN.QK_SCALE = None
_C.MODEL.SWIN.DROP_RATE = 0.0
_C.MODEL.SWIN.ATTN_DROP_RATE = 0.0
_C.MODEL.SWIN.DROP_PATH_RATE = 0.3
_C.MODEL.SWIN.APE = False  # absolute position embedding
_C.MODEL.SWIN.PATCH_NORM = True
_C.MODEL.SWIN.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
_C.MODEL.SWIN.USE_CHECKPOINT = False  # activation checkpointing

# ---------------------------------------------------------------------------------------------
# Semantic-segmentation head (detectron2 + DeepLab + Mask2Former pixel decoder)
# ---------------------------------------------------------------------------------------------
_C.MODEL.SEM_SEG_HEAD = CN()
_C.MODEL.SEM_SEG_HEAD.NAME = "SemSegFPNHead"
# [project] Activation checkpointing of the MSDeformAttn pixel decoder's encoder layers (training).
_C.MODEL.SEM_SEG_HEAD.CHECKPOINT = False
_C.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["p2", "p3", "p4", "p5"]
# Ground-truth label that is ignored by the losses.
_C.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255
_C.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 54
_C.MODEL.SEM_SEG_HEAD.CONVS_DIM = 128
_C.MODEL.SEM_SEG_HEAD.COMMON_STRIDE = 4
_C.MODEL.SEM_SEG_HEAD.NORM = "GN"  # "" or "GN"
_C.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 1.0
# DeepLab head options (add_deeplab_config).
_C.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "hard_pixel_mining"  # or "cross_entropy"
_C.MODEL.SEM_SEG_HEAD.PROJECT_FEATURES = ["res2"]
_C.MODEL.SEM_SEG_HEAD.PROJECT_CHANNELS = [48]
_C.MODEL.SEM_SEG_HEAD.ASPP_CHANNELS = 256
_C.MODEL.SEM_SEG_HEAD.ASPP_DILATIONS = [6, 12, 18]
_C.MODEL.SEM_SEG_HEAD.ASPP_DROPOUT = 0.1
_C.MODEL.SEM_SEG_HEAD.USE_DEPTHWISE_SEPARABLE_CONV = False
# Pixel decoder (Mask(2)Former).
_C.MODEL.SEM_SEG_HEAD.MASK_DIM = 256
_C.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS = 0  # encoder layers inside the pixel decoder
_C.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = "BasePixelDecoder"
# Multi-scale deformable-attention encoder (MSDeformAttnPixelDecoder).
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res3", "res4", "res5"]
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS = 4
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = 8
# [project] FFN width of the deformable encoder layers; the official code fixes it at 1024 (16x a
# 64-channel model's width: most of a small model's encoder time).
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD = 1024

# [project] Backend of the multi-scale deformable attention op:
# "auto" (compiled op when available, else PyTorch), "pytorch", "cuda" or "triton".
_C.MODEL.MS_DEFORM_ATTN = CN()
_C.MODEL.MS_DEFORM_ATTN.IMPL = "auto"

# ---------------------------------------------------------------------------------------------
# Mask(2)Former: transformer decoder, losses, inference
# ---------------------------------------------------------------------------------------------
_C.MODEL.MASK_FORMER = CN()
# [project] Activation checkpointing of the masked-attention decoder layers (training).
_C.MODEL.MASK_FORMER.CHECKPOINT = False
# Losses.
_C.MODEL.MASK_FORMER.DEEP_SUPERVISION = True
_C.MODEL.MASK_FORMER.NO_OBJECT_WEIGHT = 0.1
_C.MODEL.MASK_FORMER.CLASS_WEIGHT = 1.0
_C.MODEL.MASK_FORMER.DICE_WEIGHT = 1.0
_C.MODEL.MASK_FORMER.MASK_WEIGHT = 20.0
# [project] Set criterion: "mask2former" (point-sampled BCE + dice, Mask2Former) or
# "maskformer" (full-resolution focal + dice, MaskFormer v1; the v1 Base configs set it).
_C.MODEL.MASK_FORMER.CRITERION = "mask2former"
# Point-sampled mask loss (PointRend-style sampling): number of points, oversampling `k` and
# importance-sampling ratio `beta`.
_C.MODEL.MASK_FORMER.TRAIN_NUM_POINTS = 112 * 112
_C.MODEL.MASK_FORMER.OVERSAMPLE_RATIO = 3.0
_C.MODEL.MASK_FORMER.IMPORTANCE_SAMPLE_RATIO = 0.75
# Transformer decoder.
_C.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME = "MultiScaleMaskedTransformerDecoder"
_C.MODEL.MASK_FORMER.NHEADS = 8
_C.MODEL.MASK_FORMER.DROPOUT = 0.1
_C.MODEL.MASK_FORMER.DIM_FEEDFORWARD = 2048
_C.MODEL.MASK_FORMER.ENC_LAYERS = 0
_C.MODEL.MASK_FORMER.DEC_LAYERS = 6
_C.MODEL.MASK_FORMER.PRE_NORM = False
_C.MODEL.MASK_FORMER.HIDDEN_DIM = 256
_C.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES = 100
# Which pixel-decoder output the transformer decoder reads.
_C.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE = "res5"
_C.MODEL.MASK_FORMER.ENFORCE_INPUT_PROJ = False
# Pad the batch to a multiple of this (overrides a backbone size_divisibility of 0).
_C.MODEL.MASK_FORMER.SIZE_DIVISIBILITY = 32
# Inference.
_C.MODEL.MASK_FORMER.TEST = CN()
_C.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = True
_C.MODEL.MASK_FORMER.TEST.INSTANCE_ON = False
_C.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = False
_C.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD = 0.0
_C.MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD = 0.0
_C.MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE = False
# [project] Panoptic: a pixel joins its argmax query only where that query's mask prob >= 0.5
# (Mask2Former); MaskFormer v1 configs set False (v1 assigns every argmax pixel).
_C.MODEL.MASK_FORMER.TEST.PANOPTIC_REQUIRE_MASK_PROB = True
# MaskFormer v1 only (add_mask_former_config); read by no model here.
_C.MODEL.MASK_FORMER.TEST.SEMANTIC_INFERENCE_METHOD = "probabilistic"

# ---------------------------------------------------------------------------------------------
# detectron2 detection heads (R-CNN, RetinaNet, panoptic FPN): kept so official dumps load
# ---------------------------------------------------------------------------------------------
_C.MODEL.FPN = CN()
_C.MODEL.FPN.IN_FEATURES = []
_C.MODEL.FPN.OUT_CHANNELS = 256
_C.MODEL.FPN.NORM = ""
_C.MODEL.FPN.FUSE_TYPE = "sum"

_C.MODEL.PROPOSAL_GENERATOR = CN()
_C.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
_C.MODEL.PROPOSAL_GENERATOR.MIN_SIZE = 0

_C.MODEL.ANCHOR_GENERATOR = CN()
_C.MODEL.ANCHOR_GENERATOR.NAME = "DefaultAnchorGenerator"
_C.MODEL.ANCHOR_GENERATOR.SIZES = [[32, 64, 128, 256, 512]]
_C.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]
_C.MODEL.ANCHOR_GENERATOR.ANGLES = [[-90, 0, 90]]
_C.MODEL.ANCHOR_GENERATOR.OFFSET = 0.0

_C.MODEL.RPN = CN()
_C.MODEL.RPN.HEAD_NAME = "StandardRPNHead"
_C.MODEL.RPN.IN_FEATURES = ["res4"]
_C.MODEL.RPN.BOUNDARY_THRESH = -1
_C.MODEL.RPN.IOU_THRESHOLDS = [0.3, 0.7]
_C.MODEL.RPN.IOU_LABELS = [0, -1, 1]
_C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
_C.MODEL.RPN.POSITIVE_FRACTION = 0.5
_C.MODEL.RPN.BBOX_REG_LOSS_TYPE = "smooth_l1"
_C.MODEL.RPN.BBOX_REG_LOSS_WEIGHT = 1.0
_C.MODEL.RPN.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
_C.MODEL.RPN.SMOOTH_L1_BETA = 0.0
_C.MODEL.RPN.LOSS_WEIGHT = 1.0
_C.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 12000
_C.MODEL.RPN.PRE_NMS_TOPK_TEST = 6000
_C.MODEL.RPN.POST_NMS_TOPK_TRAIN = 2000
_C.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
_C.MODEL.RPN.NMS_THRESH = 0.7
_C.MODEL.RPN.CONV_DIMS = [-1]

_C.MODEL.ROI_HEADS = CN()
_C.MODEL.ROI_HEADS.NAME = "Res5ROIHeads"
_C.MODEL.ROI_HEADS.NUM_CLASSES = 80
_C.MODEL.ROI_HEADS.IN_FEATURES = ["res4"]
_C.MODEL.ROI_HEADS.IOU_THRESHOLDS = [0.5]
_C.MODEL.ROI_HEADS.IOU_LABELS = [0, 1]
_C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
_C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25
_C.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
_C.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5
_C.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT = True

_C.MODEL.ROI_BOX_HEAD = CN()
_C.MODEL.ROI_BOX_HEAD.NAME = ""
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE = "smooth_l1"
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT = 1.0
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_C.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA = 0.0
_C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0
_C.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignV2"
_C.MODEL.ROI_BOX_HEAD.NUM_FC = 0
_C.MODEL.ROI_BOX_HEAD.FC_DIM = 1024
_C.MODEL.ROI_BOX_HEAD.NUM_CONV = 0
_C.MODEL.ROI_BOX_HEAD.CONV_DIM = 256
_C.MODEL.ROI_BOX_HEAD.NORM = ""
_C.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = False
_C.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES = False
_C.MODEL.ROI_BOX_HEAD.USE_FED_LOSS = False
_C.MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE = False
_C.MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER = 0.5
_C.MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES = 50

_C.MODEL.ROI_BOX_CASCADE_HEAD = CN()
_C.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS = (
    (10.0, 10.0, 5.0, 5.0),
    (20.0, 20.0, 10.0, 10.0),
    (30.0, 30.0, 15.0, 15.0),
)
_C.MODEL.ROI_BOX_CASCADE_HEAD.IOUS = (0.5, 0.6, 0.7)

_C.MODEL.ROI_MASK_HEAD = CN()
_C.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
_C.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 0
_C.MODEL.ROI_MASK_HEAD.NUM_CONV = 0
_C.MODEL.ROI_MASK_HEAD.CONV_DIM = 256
_C.MODEL.ROI_MASK_HEAD.NORM = ""
_C.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK = False
_C.MODEL.ROI_MASK_HEAD.POOLER_TYPE = "ROIAlignV2"

_C.MODEL.ROI_KEYPOINT_HEAD = CN()
_C.MODEL.ROI_KEYPOINT_HEAD.NAME = "KRCNNConvDeconvUpsampleHead"
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_SAMPLING_RATIO = 0
_C.MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS = tuple(512 for _ in range(8))
_C.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS = 17
_C.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE = 1
_C.MODEL.ROI_KEYPOINT_HEAD.NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS = True
_C.MODEL.ROI_KEYPOINT_HEAD.LOSS_WEIGHT = 1.0
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_TYPE = "ROIAlignV2"

_C.MODEL.PANOPTIC_FPN = CN()
_C.MODEL.PANOPTIC_FPN.INSTANCE_LOSS_WEIGHT = 1.0
_C.MODEL.PANOPTIC_FPN.COMBINE = CN({"ENABLED": True})
_C.MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH = 0.5
_C.MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT = 4096
_C.MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH = 0.5

_C.MODEL.RETINANET = CN()
_C.MODEL.RETINANET.NUM_CLASSES = 80
_C.MODEL.RETINANET.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
_C.MODEL.RETINANET.NUM_CONVS = 4
_C.MODEL.RETINANET.IOU_THRESHOLDS = [0.4, 0.5]
_C.MODEL.RETINANET.IOU_LABELS = [0, -1, 1]
_C.MODEL.RETINANET.PRIOR_PROB = 0.01
_C.MODEL.RETINANET.SCORE_THRESH_TEST = 0.05
_C.MODEL.RETINANET.TOPK_CANDIDATES_TEST = 1000
_C.MODEL.RETINANET.NMS_THRESH_TEST = 0.5
_C.MODEL.RETINANET.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
_C.MODEL.RETINANET.FOCAL_LOSS_GAMMA = 2.0
_C.MODEL.RETINANET.FOCAL_LOSS_ALPHA = 0.25
_C.MODEL.RETINANET.SMOOTH_L1_LOSS_BETA = 0.1
_C.MODEL.RETINANET.BBOX_REG_LOSS_TYPE = "smooth_l1"
_C.MODEL.RETINANET.NORM = ""

# ---------------------------------------------------------------------------------------------
# Solver
# ---------------------------------------------------------------------------------------------
_C.SOLVER = CN()
# "WarmupMultiStepLR", "WarmupCosineLR" or "WarmupPolyLR".
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
_C.SOLVER.MAX_ITER = 40000
_C.SOLVER.BASE_LR = 0.001
# Final LR of the cosine schedule.
_C.SOLVER.BASE_LR_END = 0.0
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.NESTEROV = False
_C.SOLVER.WEIGHT_DECAY = 0.0001
# Weight decay of normalisation-layer parameters.
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
_C.SOLVER.GAMMA = 0.1
# Iterations at which the LR is multiplied by GAMMA.
_C.SOLVER.STEPS = (30000,)
# Number of decays of the step schedule when STEPS is derived (detectron2 LazyConfig helper).
_C.SOLVER.NUM_DECAYS = 3
_C.SOLVER.WARMUP_FACTOR = 1.0 / 1000
_C.SOLVER.WARMUP_ITERS = 1000
_C.SOLVER.WARMUP_METHOD = "linear"  # "linear", "constant" or "linear_log"
# Rescale the step/warmup schedule when the batch size is auto-scaled.
_C.SOLVER.RESCALE_INTERVAL = False
_C.SOLVER.CHECKPOINT_PERIOD = 5000
# [project] File format of saved checkpoints: "pth" (torch.save) or "safetensors" (model weights in
# <name>.safetensors, optimizer / scheduler / iteration state in a <name>.state.pth sidecar).
_C.SOLVER.CHECKPOINT_FORMAT = "pth"
# Images per iteration across all workers.
_C.SOLVER.IMS_PER_BATCH = 16
# Number of workers the config was written for (0: no automatic rescaling).
_C.SOLVER.REFERENCE_WORLD_SIZE = 0
_C.SOLVER.BIAS_LR_FACTOR = 1.0
# None: same as WEIGHT_DECAY.
_C.SOLVER.WEIGHT_DECAY_BIAS = None
# Gradient clipping: "value", "norm" or (Mask2Former) "full_model".
_C.SOLVER.CLIP_GRADIENTS = CN({"ENABLED": False})
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
# Automatic mixed precision for training.
_C.SOLVER.AMP = CN({"ENABLED": False})
# [project] Autocast dtype for AMP training: "float16" or "bfloat16".
_C.SOLVER.AMP.PRECISION = "float16"
# Poly LR schedule (add_deeplab_config).
_C.SOLVER.POLY_LR_POWER = 0.9
_C.SOLVER.POLY_LR_CONSTANT_ENDING = 0.0
# Mask(2)Former optimizer options.
_C.SOLVER.WEIGHT_DECAY_EMBED = 0.0
_C.SOLVER.OPTIMIZER = "ADAMW"  # "SGD" or "ADAMW"
_C.SOLVER.BACKBONE_MULTIPLIER = 0.1  # LR multiplier of backbone parameters

# ---------------------------------------------------------------------------------------------
# Test / evaluation
# ---------------------------------------------------------------------------------------------
_C.TEST = CN()
# End-to-end accuracy checks: [[task, metric, value, tolerance], ...].
_C.TEST.EXPECTED_RESULTS = []
# Evaluate every this many iterations during training (0: never).
_C.TEST.EVAL_PERIOD = 0
_C.TEST.KEYPOINT_OKS_SIGMAS = []
_C.TEST.DETECTIONS_PER_IMAGE = 100
# Test-time augmentation.
_C.TEST.AUG = CN({"ENABLED": False})
_C.TEST.AUG.MIN_SIZES = (400, 500, 600, 700, 800, 900, 1000, 1100, 1200)
_C.TEST.AUG.MAX_SIZE = 4000
_C.TEST.AUG.FLIP = True
# Recompute BatchNorm statistics before evaluation.
_C.TEST.PRECISE_BN = CN({"ENABLED": False})
_C.TEST.PRECISE_BN.NUM_ITER = 200

# ---------------------------------------------------------------------------------------------
# Misc
# ---------------------------------------------------------------------------------------------
_C.OUTPUT_DIR = "./output"
# Negative: a different random seed every run.
_C.SEED = -1
_C.CUDNN_BENCHMARK = False
# float32 matmul precision ("" leaves torch's default; "highest", "high", "medium").
_C.FLOAT32_PRECISION = ""
# Visualise training samples every this many iterations (0: never).
_C.VIS_PERIOD = 0
# Scratch space for quick experiments; never read by committed code.
_C.GLOBAL = CN()
_C.GLOBAL.HACK = 1.0


def get_cfg() -> CN:
    """A fresh copy of the default config (safe to modify)."""
    return _C.clone()


# ---------------------------------------------------------------------------------------------
# [project] timm backbones (MODEL.BACKBONE.NAME: "build_timm_backbone"; needs `pip install timm`)
# ---------------------------------------------------------------------------------------------
_C.MODEL.TIMM = CN()
# Any timm model name that supports features_only=True, e.g. "convnext_tiny", "resnet50".
_C.MODEL.TIMM.NAME = ""
# timm feature indices; the i-th one is returned as "res{i + 2}" (strides / channels from timm's
# feature_info). ResNets / RegNets: (1, 2, 3, 4) for strides 4..32; ConvNeXt / Swin: (0, 1, 2, 3).
_C.MODEL.TIMM.OUT_INDICES = (1, 2, 3, 4)
# Which of those names the backbone returns.
_C.MODEL.TIMM.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
# Local weights file in timm's key layout (.pth/.pt/.bin or .safetensors); "" = random init.
# Never downloaded. Freezing follows MODEL.BACKBONE.FREEZE_AT.
_C.MODEL.TIMM.PRETRAINED = ""
# Stochastic depth rate (passed to timm only when > 0).
_C.MODEL.TIMM.DROP_PATH_RATE = 0.0
