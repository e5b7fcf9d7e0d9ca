"""``VideoMaskFormer``: Mask2Former for video instance segmentation.

All T frames of a clip go through the backbone and the pixel decoder as one batch; the
video transformer decoder (:mod:`..transformer_decoder.video_mask2former_transformer_decoder`)
predicts, per query, one class for the clip and a mask per frame. Training returns the
weighted losses of :class:`~mask2former.modeling.video_criterion.VideoSetCriterion`;
inference keeps the top-10 (query, class) pairs of the video (:func:`video_inference`).

Inputs follow the official video mapper: a list of dicts, one per video, with ``image`` a
list of T (C, H, W) tensors (INPUT.FORMAT order, 0-255), optionally ``height`` / ``width``
(the output size), and for training ``instances``: a list of T per-frame ``Instances`` with
``gt_ids`` (track id, -1 where the object is absent from that frame), ``gt_classes`` and
``gt_masks``, the same objects in the same order in every frame.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...config import configurable
from ...structures import ImageList
from ..build import META_ARCH_REGISTRY, build_backbone, build_sem_seg_head
from ..video_criterion import VideoSetCriterion
from .mask_former import dataset_metadata, head_outputs
from .preprocessing import preprocess_images

__all__ = ["VideoMaskFormer", "video_inference"]


def video_inference(
    pred_cls: torch.Tensor,
    pred_masks: torch.Tensor,
    padded_size: Sequence[int],
    image_size: Sequence[int],
    output_height: int,
    output_width: int,
    *,
    num_classes: int,
    topk: int = 10,
) -> Dict[str, Any]:
    """The official video result: the ``topk`` best (query, class) pairs of a clip.

    Args:
        pred_cls: (Q, K+1) class logits of the clip.
        pred_masks: (Q, T, h/4, w/4) mask logits of the padded frames.
        padded_size: (Hp, Wp) of the padded input frames.
        image_size: (h, w) of the frames before padding.
        output_height, output_width: size of the returned masks.
        num_classes: K.
        topk: pairs kept (all Q*K if fewer).
    Returns:
        ``image_size`` (output_height, output_width); ``pred_scores`` list of floats (softmax
        probability of the pair's class); ``pred_labels`` list of ints; ``pred_masks`` list
        of (T, output_height, output_width) bool CPU tensors (logit > 0), in
        ``topk(sorted=False)`` order.
    """
    scores = F.softmax(pred_cls, dim=-1)[:, :-1]  # (Q, K)
    k = min(topk, scores.numel())
    scores_per_video, topk_indices = scores.flatten(0, 1).topk(k, sorted=False)  # (k,)
    labels_per_video = topk_indices % num_classes
    query_indices = topk_indices // num_classes
    # Upsampling only the chosen queries gives the official upsample-all-then-choose values
    # (bilinear resizing is per channel).
    masks = F.interpolate(pred_masks[query_indices], size=tuple(padded_size), mode="bilinear",
                          align_corners=False)  # (k, T, Hp, Wp)
    h, w = image_size
    masks = masks[:, :, :h, :w]  # (k, T, h, w)
    masks = F.interpolate(masks, size=(output_height, output_width), mode="bilinear",
                          align_corners=False) > 0.0  # (k, T, height, width)
    return {
        "image_size": (output_height, output_width),
        "pred_scores": scores_per_video.tolist(),
        "pred_labels": labels_per_video.tolist(),
        "pred_masks": list(masks.cpu()),
    }


@META_ARCH_REGISTRY.register()
class VideoMaskFormer(nn.Module):
    """Mask classification model for video instance segmentation (one result per clip)."""

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        sem_seg_head: nn.Module,
        criterion: nn.Module,
        num_queries: int,
        object_mask_threshold: float,
        overlap_threshold: float,
        metadata: Any,
        size_divisibility: int,
        sem_seg_postprocess_before_inference: bool,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        num_frames: int,
        test_topk_per_video: int = 10,
    ):
        """
        Args:
            backbone: image -> dict of features (``Backbone`` interface).
            sem_seg_head: features of B*T frames -> {"pred_logits" (B, Q, K+1),
                "pred_masks" (B, Q, T, h, w), "aux_outputs"}; has ``num_classes``.
            criterion: outputs, targets -> dict of unweighted losses; has ``weight_dict``.
            num_queries: number of object queries.
            object_mask_threshold, overlap_threshold: kept for the official interface
                (video inference does not use them).
            metadata: dataset metadata (not needed for inference; may be None).
            size_divisibility: pad frames to a multiple of this; < 0 uses the backbone's.
            sem_seg_postprocess_before_inference: kept for the official interface (masks are
                always resized before thresholding).
            pixel_mean, pixel_std: per-channel normalisation of the input frames.
            num_frames: frames per training clip (INPUT.SAMPLING_FRAME_NUM).
            test_topk_per_video: (query, class) pairs kept per video at inference.
        """
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.num_queries = num_queries
        self.overlap_threshold = overlap_threshold
        self.object_mask_threshold = object_mask_threshold
        self.metadata = metadata
        if size_divisibility < 0:
            size_divisibility = self.backbone.size_divisibility
        self.size_divisibility = size_divisibility
        self.sem_seg_postprocess_before_inference = sem_seg_postprocess_before_inference
        # not part of the state_dict: official checkpoints do not contain them
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.num_frames = num_frames
        self.test_topk_per_video = test_topk_per_video

    @classmethod
    def from_config(cls, cfg) -> Dict[str, Any]:
        backbone = build_backbone(cfg)
        sem_seg_head = build_sem_seg_head(cfg, backbone.output_shape())
        test = cfg.MODEL.MASK_FORMER.TEST
        return {
            "backbone": backbone,
            "sem_seg_head": sem_seg_head,
            "criterion": VideoSetCriterion(cfg),
            "num_queries": cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES,
            "object_mask_threshold": test.OBJECT_MASK_THRESHOLD,
            "overlap_threshold": test.OVERLAP_THRESHOLD,
            "metadata": dataset_metadata(cfg),
            "size_divisibility": cfg.MODEL.MASK_FORMER.SIZE_DIVISIBILITY,
            "sem_seg_postprocess_before_inference": True,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "num_frames": cfg.INPUT.SAMPLING_FRAME_NUM,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def _check_inputs(self, batched_inputs: List[Dict[str, Any]]) -> None:
        for i, video in enumerate(batched_inputs):
            frames = video.get("image")
            if not isinstance(frames, (list, tuple)) or len(frames) == 0:
                raise ValueError(
                    f"VideoMaskFormer: input {i} (video_id={video.get('video_id')}) needs 'image' as a "
                    f"non-empty list of (C, H, W) frames, got {type(frames).__name__}"
                )
            if self.training and len(frames) != self.num_frames:
                raise ValueError(
                    f"VideoMaskFormer: training video {i} (video_id={video.get('video_id')}) has "
                    f"{len(frames)} frames; INPUT.SAMPLING_FRAME_NUM is {self.num_frames}"
                )
        if not self.training and len(batched_inputs) != 1:
            raise ValueError(
                f"VideoMaskFormer: inference takes one video per call (batch size 1), got "
                f"{len(batched_inputs)}"
            )

    def forward(self, batched_inputs: List[Dict[str, Any]]):
        """
        Args:
            batched_inputs: one dict per video (see the module docstring).
        Returns:
            training: dict of weighted losses. Inference (one video): the dict of
            :func:`video_inference` at (``height``, ``width``).
        """
        self._check_inputs(batched_inputs)
        frames = [{"image": frame} for video in batched_inputs for frame in video["image"]]
        images = preprocess_images(frames, self.pixel_mean, self.pixel_std, self.size_divisibility,
                                   getattr(self.backbone, "padding_constraints", None))  # (B*T, C, Hp, Wp)

        features = self.backbone(images.tensor)
        outputs = head_outputs(self.sem_seg_head, features, self.training)

        if self.training:
            if "instances" not in batched_inputs[0]:
                raise ValueError("VideoMaskFormer: training inputs need 'instances' (one Instances per frame)")
            targets = self.prepare_targets(batched_inputs, images)
            losses = self.criterion(outputs, targets)
            for name in list(losses.keys()):
                if name in self.criterion.weight_dict:
                    losses[name] *= self.criterion.weight_dict[name]
                else:  # a loss without a weight is not trained
                    losses.pop(name)
            return losses

        mask_cls = outputs["pred_logits"][0]  # (Q, K+1)
        mask_pred = outputs["pred_masks"][0]  # (Q, T, h, w)
        del outputs
        image_size = images.image_sizes[0]
        height = batched_inputs[0].get("height", image_size[0])
        width = batched_inputs[0].get("width", image_size[1])
        return video_inference(
            mask_cls, mask_pred, tuple(images.tensor.shape[-2:]), image_size, height, width,
            num_classes=self.sem_seg_head.num_classes, topk=self.test_topk_per_video,
        )

    def prepare_targets(self, batched_inputs: List[Dict[str, Any]], images: ImageList) -> List[Dict[str, torch.Tensor]]:
        """Per video: ``labels`` (N,), ``ids`` (N, T) and ``masks`` (N, T, Hp, Wp) of the tracks
        present in at least one frame; masks zero-padded to the padded batch size."""
        h_pad, w_pad = images.tensor.shape[-2:]
        targets = []
        for v, video in enumerate(batched_inputs):
            frames = video["instances"]
            num_frames = len(frames)
            if num_frames != len(video["image"]):
                raise ValueError(
                    f"VideoMaskFormer: video {v} (video_id={video.get('video_id')}) has "
                    f"{len(video['image'])} frames but {num_frames} Instances"
                )
            num_inst = len(frames[0])
            masks = torch.zeros((num_inst, num_frames, h_pad, w_pad), dtype=torch.bool, device=self.device)
            ids = []
            for f, inst in enumerate(frames):
                if len(inst) != num_inst:
                    raise ValueError(
                        f"VideoMaskFormer: video {v} (video_id={video.get('video_id')}) frame {f} has "
                        f"{len(inst)} instances, frame 0 has {num_inst} (every frame must list "
                        "every track, gt_ids -1 where absent)"
                    )
                inst = inst.to(self.device)
                gt_masks = getattr(inst.gt_masks, "tensor", inst.gt_masks)  # BitMasks or tensor
                h, w = gt_masks.shape[-2:]
                masks[:, f, :h, :w] = gt_masks
                ids.append(inst.gt_ids[:, None])
            ids = torch.cat(ids, dim=1)  # (N, T)
            valid = (ids != -1).any(dim=-1)  # tracks present somewhere in the clip
            targets.append({
                "labels": frames[-1].gt_classes.to(self.device)[valid],  # (N',)
                "ids": ids[valid],  # (N', T)
                "masks": masks[valid].float(),  # (N', T, Hp, Wp)
            })
        return targets
