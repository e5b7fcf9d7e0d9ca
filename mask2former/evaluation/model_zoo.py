"""The official Mask2Former / MaskFormer checkpoints and their published numbers, by config path.

Source: ``MODEL_ZOO.md`` of facebookresearch/Mask2Former (commit 5f63e5a, including the video
tables) and of facebookresearch/MaskFormer (commit 335d778). ``MODEL_ZOO.md`` in this repo lists
the same checkpoints for people; ``tests/test_model_zoo.py`` keeps the two in agreement. The official YAML files stay untouched: :func:`published_results` gives the
``TEST.EXPECTED_RESULTS`` entries of a config of this repo, which the engine fills in when the
config comes from ``configs/`` (see :func:`~mask2former.evaluation.testing.apply_published_results`).

Metric keys are this package's result keys: ``panoptic_seg/PQ``, ``segm/AP`` (COCO or
Cityscapes instance AP, and the instance AP of panoptic models), ``sem_seg/mIoU`` (Cityscapes:
``sem_seg/IoU``), ``sem_seg_TTA/...`` for the multi-scale + flip numbers, ``ytvis/AP`` for video.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple

__all__ = ["ZooEntry", "MODEL_ZOO", "TOLERANCE", "published_results", "zoo_entry"]

# Published numbers are rounded to 0.1 and vary by a few tenths between training runs.
TOLERANCE = 0.5

_M2F = "https://dl.fbaipublicfiles.com/maskformer/mask2former/"
_MF = "https://dl.fbaipublicfiles.com/maskformer/"
_VID = "https://dl.fbaipublicfiles.com/maskformer/video_mask2former/"

_PRETRAIN = {
    "R50": "ImageNet-1k (torchvision R-50)", "R101": "ImageNet-1k (torchvision R-101)",
    "R101c": "ImageNet-1k (R-103.pkl, 3x3 deep stem)", "Swin-T": "ImageNet-1k (224)", "Swin-S": "ImageNet-1k (224)",
    "Swin-B": "ImageNet-1k (384)", "Swin-B (IN21k)": "ImageNet-22k (384)", "Swin-L (IN21k)": "ImageNet-22k (384)",
}


class ZooEntry(NamedTuple):
    config: str                                  # path in this repo
    model: str                                   # "Mask2Former", "Mask2Former (200 queries)", "MaskFormer", ...
    backbone: str
    schedule: str
    metrics: Tuple[Tuple[str, str, float], ...]  # (task, metric, published value)
    url: str
    model_id: str
    note: str = ""

    @property
    def pretrain(self) -> str:
        if self.config.startswith("configs/youtubevis"):
            return _PRETRAIN[self.backbone] + "; whole model from the COCO instance checkpoint"
        return _PRETRAIN[self.backbone]


def _pan(cfg, model, bb, sched, pq, ap, miou, url, mid, miou_key="mIoU", note=""):
    metrics = [("panoptic_seg", "PQ", pq)]
    if ap is not None:
        metrics.append(("segm", "AP", ap))
    if miou is not None:
        metrics.append(("sem_seg", miou_key, miou))
    return ZooEntry(cfg, model, bb, sched, tuple(metrics), url, mid, note)


def _ins(cfg, model, bb, sched, ap, url, mid, ap50=None, note=""):
    metrics = [("segm", "AP", ap)] + ([("segm", "AP50", ap50)] if ap50 is not None else [])
    return ZooEntry(cfg, model, bb, sched, tuple(metrics), url, mid, note)


def _sem(cfg, model, bb, sched, miou, ms, url, mid, key="mIoU", note=""):
    metrics = [("sem_seg", key, miou)] + ([("sem_seg_TTA", key, ms)] if ms is not None else [])
    return ZooEntry(cfg, model, bb, sched, tuple(metrics), url, mid, note)


def _vis(cfg, bb, sched, ap, url, mid, model="Mask2Former"):
    return ZooEntry(cfg, model, bb, sched, (("ytvis", "AP", ap),), url, mid)


M2F, M2F200, MF = "Mask2Former", "Mask2Former (200 queries)", "MaskFormer"
C = "configs/"
MODEL_ZOO: List[ZooEntry] = [
    # ---------------------------------------------------------------- Mask2Former, COCO
    _pan(C + "coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml", M2F, "R50", "50ep", 51.9, 41.7, 61.7, _M2F + "coco/panoptic/maskformer2_R50_bs16_50ep/model_final_94dc52.pkl", "47430278_4"),
    _pan(C + "coco/panoptic-segmentation/maskformer2_R101_bs16_50ep.yaml", M2F, "R101", "50ep", 52.6, 42.6, 62.4, _M2F + "coco/panoptic/maskformer2_R101_bs16_50ep/model_final_b807bd.pkl", "47992113_1"),
    _pan(C + "coco/panoptic-segmentation/swin/maskformer2_swin_tiny_bs16_50ep.yaml", M2F, "Swin-T", "50ep", 53.2, 43.3, 63.2, _M2F + "coco/panoptic/maskformer2_swin_tiny_bs16_50ep/model_final_9fd0ae.pkl", "48558700_1"),
    _pan(C + "coco/panoptic-segmentation/swin/maskformer2_swin_small_bs16_50ep.yaml", M2F, "Swin-S", "50ep", 54.6, 44.7, 64.2, _M2F + "coco/panoptic/maskformer2_swin_small_bs16_50ep/model_final_a407fd.pkl", "48558700_3"),
    _pan(C + "coco/panoptic-segmentation/swin/maskformer2_swin_base_384_bs16_50ep.yaml", M2F, "Swin-B", "50ep", 55.1, 45.2, 65.1, _M2F + "coco/panoptic/maskformer2_swin_base_384_bs16_50ep/model_final_9d7f02.pkl", "48558700_5"),
    _pan(C + "coco/panoptic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_50ep.yaml", M2F, "Swin-B (IN21k)", "50ep", 56.4, 46.3, 67.1, _M2F + "coco/panoptic/maskformer2_swin_base_IN21k_384_bs16_50ep/model_final_54b88a.pkl", "48558700_7"),
    _pan(C + "coco/panoptic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_100ep.yaml", M2F200, "Swin-L (IN21k)", "100ep", 57.8, 48.6, 67.4, _M2F + "coco/panoptic/maskformer2_swin_large_IN21k_384_bs16_100ep/model_final_f07440.pkl", "47429163_0"),
    _ins(C + "coco/instance-segmentation/maskformer2_R50_bs16_50ep.yaml", M2F, "R50", "50ep", 43.7, _M2F + "coco/instance/maskformer2_R50_bs16_50ep/model_final_3c8ec9.pkl", "47430277_2", note="Boundary AP 30.6"),
    _ins(C + "coco/instance-segmentation/maskformer2_R101_bs16_50ep.yaml", M2F, "R101", "50ep", 44.2, _M2F + "coco/instance/maskformer2_R101_bs16_50ep/model_final_eba159.pkl", "47992113_0", note="Boundary AP 31.1"),
    _ins(C + "coco/instance-segmentation/swin/maskformer2_swin_tiny_bs16_50ep.yaml", M2F, "Swin-T", "50ep", 45.0, _M2F + "coco/instance/maskformer2_swin_tiny_bs16_50ep/model_final_86143f.pkl", "48558700_0", note="Boundary AP 31.8"),
    _ins(C + "coco/instance-segmentation/swin/maskformer2_swin_small_bs16_50ep.yaml", M2F, "Swin-S", "50ep", 46.3, _M2F + "coco/instance/maskformer2_swin_small_bs16_50ep/model_final_1e7f22.pkl", "48558700_2", note="Boundary AP 32.9"),
    _ins(C + "coco/instance-segmentation/swin/maskformer2_swin_base_384_bs16_50ep.yaml", M2F, "Swin-B", "50ep", 46.7, _M2F + "coco/instance/maskformer2_swin_base_384_bs16_50ep/model_final_f6e0f6.pkl", "48558700_4", note="Boundary AP 33.2"),
    _ins(C + "coco/instance-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_50ep.yaml", M2F, "Swin-B (IN21k)", "50ep", 48.1, _M2F + "coco/instance/maskformer2_swin_base_IN21k_384_bs16_50ep/model_final_83d103.pkl", "48558700_6", note="Boundary AP 34.4"),
    _ins(C + "coco/instance-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_100ep.yaml", M2F200, "Swin-L (IN21k)", "100ep", 50.1, _M2F + "coco/instance/maskformer2_swin_large_IN21k_384_bs16_100ep/model_final_e5f453.pkl", "48235555", note="Boundary AP 36.2"),
    # ---------------------------------------------------------------- Mask2Former, Cityscapes
    _pan(C + "cityscapes/panoptic-segmentation/maskformer2_R50_bs16_90k.yaml", M2F, "R50", "90k", 62.1, 37.3, 77.5, _M2F + "cityscapes/panoptic/maskformer2_R50_bs16_90k/model_final_4ab90c.pkl", "48267400_0", miou_key="IoU"),
    _pan(C + "cityscapes/panoptic-segmentation/maskformer2_R101_bs16_90k.yaml", M2F, "R101", "90k", 62.4, 37.7, 78.6, _M2F + "cityscapes/panoptic/maskformer2_R101_bs16_90k/model_final_04d286.pkl", "48267400_11", miou_key="IoU"),
    _pan(C + "cityscapes/panoptic-segmentation/swin/maskformer2_swin_tiny_bs16_90k.yaml", M2F, "Swin-T", "90k", 63.9, 39.1, 80.5, _M2F + "cityscapes/panoptic/maskformer2_swin_tiny_bs16_90k/model_final_ceba0f.pkl", "48333144_2", miou_key="IoU"),
    _pan(C + "cityscapes/panoptic-segmentation/swin/maskformer2_swin_small_bs16_90k.yaml", M2F, "Swin-S", "90k", 64.8, 40.7, 81.8, _M2F + "cityscapes/panoptic/maskformer2_swin_small_bs16_90k/model_final_23efb7.pkl", "48381916", miou_key="IoU"),
    _pan(C + "cityscapes/panoptic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_90k.yaml", M2F, "Swin-B (IN21k)", "90k", 66.1, 42.8, 82.7, _M2F + "cityscapes/panoptic/maskformer2_swin_base_IN21k_384_bs16_90k/model_final_fa840f.pkl", "48333157_2", miou_key="IoU"),
    _pan(C + "cityscapes/panoptic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_90k.yaml", M2F200, "Swin-L (IN21k)", "90k", 66.6, 43.6, 82.9, _M2F + "cityscapes/panoptic/maskformer2_swin_large_IN21k_384_bs16_90k/model_final_064788.pkl", "48318254_2", miou_key="IoU"),
    _ins(C + "cityscapes/instance-segmentation/maskformer2_R50_bs16_90k.yaml", M2F, "R50", "90k", 37.4, _M2F + "cityscapes/instance/maskformer2_R50_bs16_90k/model_final_01a8ed.pkl", "48267400_8", ap50=61.9),
    _ins(C + "cityscapes/instance-segmentation/maskformer2_R101_bs16_90k.yaml", M2F, "R101", "90k", 38.5, _M2F + "cityscapes/instance/maskformer2_R101_bs16_90k/model_final_c2b8c8.pkl", "48267400_16", ap50=63.9),
    _ins(C + "cityscapes/instance-segmentation/swin/maskformer2_swin_tiny_bs16_90k.yaml", M2F, "Swin-T", "90k", 39.7, _M2F + "cityscapes/instance/maskformer2_swin_tiny_bs16_90k/model_final_6a63f8.pkl", "48333144_4", ap50=66.9),
    _ins(C + "cityscapes/instance-segmentation/swin/maskformer2_swin_small_bs16_90k.yaml", M2F, "Swin-S", "90k", 41.8, _M2F + "cityscapes/instance/maskformer2_swin_small_bs16_90k/model_final_974824.pkl", "48333149_4", ap50=70.4),
    _ins(C + "cityscapes/instance-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_90k.yaml", M2F, "Swin-B (IN21k)", "90k", 42.0, _M2F + "cityscapes/instance/maskformer2_swin_base_IN21k_384_bs16_90k/model_final_7a3b6d.pkl", "48333157_4", ap50=68.8),
    _ins(C + "cityscapes/instance-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_90k.yaml", M2F200, "Swin-L (IN21k)", "90k", 43.7, _M2F + "cityscapes/instance/maskformer2_swin_large_IN21k_384_bs16_90k/model_final_dfa862.pkl", "49111004_2", ap50=71.4),
    _sem(C + "cityscapes/semantic-segmentation/maskformer2_R50_bs16_90k.yaml", M2F, "R50", "90k", 79.4, 82.2, _M2F + "cityscapes/semantic/maskformer2_R50_bs16_90k/model_final_cc1b1f.pkl", "48267400_4", key="IoU"),
    _sem(C + "cityscapes/semantic-segmentation/maskformer2_R101_bs16_90k.yaml", M2F, "R101", "90k", 80.1, 81.9, _M2F + "cityscapes/semantic/maskformer2_R101_bs16_90k/model_final_257ce8.pkl", "48267400_13", key="IoU"),
    _sem(C + "cityscapes/semantic-segmentation/swin/maskformer2_swin_tiny_bs16_90k.yaml", M2F, "Swin-T", "90k", 82.1, 83.0, _M2F + "cityscapes/semantic/maskformer2_swin_tiny_bs16_90k/model_final_2d58d4.pkl", "48333144_3", key="IoU"),
    _sem(C + "cityscapes/semantic-segmentation/swin/maskformer2_swin_small_bs16_90k.yaml", M2F, "Swin-S", "90k", 82.6, 83.6, _M2F + "cityscapes/semantic/maskformer2_swin_small_bs16_90k/model_final_fa26ae.pkl", "48333149_3", key="IoU"),
    _sem(C + "cityscapes/semantic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_90k.yaml", M2F, "Swin-B (IN21k)", "90k", 83.3, 84.5, _M2F + "cityscapes/semantic/maskformer2_swin_base_IN21k_384_bs16_90k/model_final_1c6b65.pkl", "48333157_3", key="IoU"),
    _sem(C + "cityscapes/semantic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_90k.yaml", M2F, "Swin-L (IN21k)", "90k", 83.3, 84.3, _M2F + "cityscapes/semantic/maskformer2_swin_large_IN21k_384_bs16_90k/model_final_17c1ee.pkl", "48318254_5", key="IoU"),
    # ---------------------------------------------------------------- Mask2Former, ADE20K
    _pan(C + "ade20k/panoptic-segmentation/maskformer2_R50_bs16_160k.yaml", M2F, "R50", "160k", 39.7, 26.5, 46.1, _M2F + "ade20k/panoptic/maskformer2_R50_bs16_160k/model_final_5c90d4.pkl", "48243028_0"),
    _pan(C + "ade20k/panoptic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k.yaml", M2F200, "Swin-L (IN21k)", "160k", 48.1, 34.2, 54.5, _M2F + "ade20k/panoptic/maskformer2_swin_large_IN21k_384_bs16_160k/model_final_e0c58e.pkl", "48267279"),
    _ins(C + "ade20k/instance-segmentation/maskformer2_R50_bs16_160k.yaml", M2F, "R50", "160k", 26.4, _M2F + "ade20k/instance/maskformer2_R50_bs16_160k/model_final_67e945.pkl", "47429167_7"),
    _ins(C + "ade20k/instance-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k.yaml", M2F200, "Swin-L (IN21k)", "160k", 34.9, _M2F + "ade20k/instance/maskformer2_swin_large_IN21k_384_bs16_160k/model_final_92dae9.pkl", "49040271_0", note="official table says backbone R50 (a typo: the config is Swin-L)"),
    _sem(C + "ade20k/semantic-segmentation/maskformer2_R50_bs16_160k.yaml", M2F, "R50", "160k", 47.2, 49.2, _M2F + "ade20k/semantic/maskformer2_R50_bs16_160k/model_final_500878.pkl", "47429167_5"),
    _sem(C + "ade20k/semantic-segmentation/maskformer2_R101_bs16_90k.yaml", M2F, "R101", "160k", 47.8, 50.1, _M2F + "ade20k/semantic/maskformer2_R101_bs16_90k/model_final_0d68be.pkl", "48243040_0"),
    _sem(C + "ade20k/semantic-segmentation/swin/maskformer2_swin_tiny_bs16_160k.yaml", M2F, "Swin-T", "160k", 47.7, 49.6, _M2F + "ade20k/semantic/maskformer2_swin_tiny_bs16_160k/model_final_5274a6.pkl", "48333144_5", note="official table says backbone Swin-L (a typo: the config is Swin-T)"),
    _sem(C + "ade20k/semantic-segmentation/swin/maskformer2_swin_small_bs16_160k.yaml", M2F, "Swin-S", "160k", 51.3, 52.4, _M2F + "ade20k/semantic/maskformer2_swin_small_bs16_160k/model_final_011c6d.pkl", "48333149_5"),
    _sem(C + "ade20k/semantic-segmentation/swin/maskformer2_swin_base_384_bs16_160k_res640.yaml", M2F, "Swin-B", "160k", 52.4, 53.7, _M2F + "ade20k/semantic/maskformer2_swin_base_384_bs16_160k_res640/model_final_503e96.pkl", "48333153_5"),
    _sem(C + "ade20k/semantic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_160k_res640.yaml", M2F, "Swin-B (IN21k)", "160k", 53.9, 55.1, _M2F + "ade20k/semantic/maskformer2_swin_base_IN21k_384_bs16_160k_res640/model_final_7e47bf.pkl", "48333157_5"),
    _sem(C + "ade20k/semantic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k_res640.yaml", M2F, "Swin-L (IN21k)", "160k", 56.1, 57.3, _M2F + "ade20k/semantic/maskformer2_swin_large_IN21k_384_bs16_160k_res640/model_final_6b4a3a.pkl", "48004474_0"),
    # ---------------------------------------------------------------- Mask2Former, Mapillary Vistas
    _pan(C + "mapillary-vistas/panoptic-segmentation/maskformer_R50_bs16_300k.yaml", M2F, "R50", "300k", 36.3, None, 50.7, _M2F + "mapillary_vistas/panoptic/maskformer_R50_bs16_300k/model_final_4e9874.pkl", "49392417_0"),
    _pan(C + "mapillary-vistas/panoptic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_300k.yaml", M2F200, "Swin-L (IN21k)", "300k", 45.5, None, 60.8, _M2F + "mapillary_vistas/panoptic/maskformer2_swin_large_IN21k_384_bs16_300k/model_final_132c71.pkl", "48267065_4"),
    _sem(C + "mapillary-vistas/semantic-segmentation/maskformer2_R50_bs16_300k.yaml", M2F, "R50", "300k", 57.4, 59.0, _M2F + "mapillary_vistas/semantic/maskformer_R50_bs16_300k/model_final_6c66d0.pkl", "49189528_1", note="official table links configs/.../maskformer_R50_bs16_300k.yaml; the file is maskformer2_R50_bs16_300k.yaml"),
    _sem(C + "mapillary-vistas/semantic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_300k.yaml", M2F, "Swin-L (IN21k)", "300k", 63.2, 64.7, _M2F + "mapillary_vistas/semantic/maskformer2_swin_large_IN21k_384_bs16_300k/model_final_90ee2d.pkl", "49189528_0"),
    # ---------------------------------------------------------------- Mask2Former, YouTube-VIS
    _vis(C + "youtubevis_2019/video_maskformer2_R50_bs16_8ep.yaml", "R50", "6k", 46.4, _VID + "ytvis_2019/video_maskformer2_R50_bs16_8ep/model_final_34112b.pkl", "51130652_3"),
    _vis(C + "youtubevis_2019/video_maskformer2_R101_bs16_8ep.yaml", "R101", "6k", 49.2, _VID + "ytvis_2019/video_maskformer2_R101_bs16_8ep/model_final_a34dca.pkl", "50897581_1"),
    _vis(C + "youtubevis_2019/swin/video_maskformer2_swin_tiny_bs16_8ep.yaml", "Swin-T", "6k", 51.5, _VID + "ytvis_2019/video_maskformer2_swin_tiny_bs16_8ep/model_final_26fffe.pkl", "50897611_3"),
    _vis(C + "youtubevis_2019/swin/video_maskformer2_swin_small_bs16_8ep.yaml", "Swin-S", "6k", 54.3, _VID + "ytvis_2019/video_maskformer2_swin_small_bs16_8ep/model_final_4a5174.pkl", "50897661_2"),
    _vis(C + "youtubevis_2019/swin/video_maskformer2_swin_base_IN21k_384_bs16_8ep.yaml", "Swin-B (IN21k)", "6k", 59.5, _VID + "ytvis_2019/video_maskformer2_swin_base_IN21k_384_bs16_8ep/model_final_221a8a.pkl", "50897733_2"),
    _vis(C + "youtubevis_2019/swin/video_maskformer2_swin_large_IN21k_384_bs16_8ep.yaml", "Swin-L (IN21k)", "6k", 60.4, _VID + "ytvis_2019/video_maskformer2_swin_large_IN21k_384_bs16_8ep/model_final_c5c739.pkl", "50908813_0", model=M2F200),
    _vis(C + "youtubevis_2021/video_maskformer2_R50_bs16_8ep.yaml", "R50", "8k", 40.6, _VID + "ytvis_2021/video_maskformer2_R50_bs16_8ep/model_final_b8aae2.pkl", "51130652_7"),
    _vis(C + "youtubevis_2021/video_maskformer2_R101_bs16_8ep.yaml", "R101", "8k", 42.4, _VID + "ytvis_2021/video_maskformer2_R101_bs16_8ep/model_final_6efd7a.pkl", "50897581_8"),
    _vis(C + "youtubevis_2021/swin/video_maskformer2_swin_tiny_bs16_8ep.yaml", "Swin-T", "8k", 45.9, _VID + "ytvis_2021/video_maskformer2_swin_tiny_bs16_8ep/model_final_965185.pkl", "50897611_7"),
    _vis(C + "youtubevis_2021/swin/video_maskformer2_swin_small_bs16_8ep.yaml", "Swin-S", "8k", 48.6, _VID + "ytvis_2021/video_maskformer2_swin_small_bs16_8ep/model_final_0dec91.pkl", "50897661_7"),
    _vis(C + "youtubevis_2021/swin/video_maskformer2_swin_base_IN21k_384_bs16_8ep.yaml", "Swin-B (IN21k)", "8k", 52.0, _VID + "ytvis_2021/video_maskformer2_swin_base_IN21k_384_bs16_8ep/model_final_a9b925.pkl", "50897733_9"),
    _vis(C + "youtubevis_2021/swin/video_maskformer2_swin_large_IN21k_384_bs16_8ep.yaml", "Swin-L (IN21k)", "8k", 52.6, _VID + "ytvis_2021/video_maskformer2_swin_large_IN21k_384_bs16_8ep/model_final_4da256.pkl", "50908813_6", model=M2F200),
    # ---------------------------------------------------------------- MaskFormer (v1), semantic
    _sem(C + "maskformer/ade20k-150/per_pixel_baseline_R50_bs16_160k.yaml", "PerPixelBaseline", "R50", "160k", 39.2, 40.9, _MF + "semantic-ade20k/per_pixel_baseline_R50_bs16_160k/model_final_1043f3.pkl", "40913338_1"),
    _sem(C + "maskformer/ade20k-150/per_pixel_baseline_plus_R50_bs16_160k.yaml", "PerPixelBaseline+", "R50", "160k", 41.9, 42.9, _MF + "semantic-ade20k/per_pixel_baseline_plus_R50_bs16_160k/model_final_833630.pkl", "40931736_2"),
    _sem(C + "maskformer/ade20k-150/maskformer_R50_bs16_160k.yaml", MF, "R50", "160k", 44.5, 46.7, _MF + "semantic-ade20k/maskformer_R50_bs16_160k/model_final_d8dbeb.pkl", "40931736_14"),
    _sem(C + "maskformer/ade20k-150/maskformer_R101_bs16_160k.yaml", MF, "R101", "160k", 45.5, 47.2, _MF + "semantic-ade20k/maskformer_R101_bs16_160k/model_final_1aeb94.pkl", "40986936_1"),
    _sem(C + "maskformer/ade20k-150/maskformer_R101c_bs16_160k.yaml", MF, "R101c", "160k", 46.0, 48.1, _MF + "semantic-ade20k/maskformer_R101c_bs16_160k/model_final_b432ea.pkl", "41703904_1"),
    _sem(C + "maskformer/ade20k-150/swin/maskformer_swin_tiny_bs16_160k.yaml", MF, "Swin-T", "160k", 46.7, 48.8, _MF + "semantic-ade20k/maskformer_swin_tiny_bs16_160k/model_final_8657a5.pkl", "40986951_3"),
    _sem(C + "maskformer/ade20k-150/swin/maskformer_swin_small_bs16_160k.yaml", MF, "Swin-S", "160k", 49.8, 51.0, _MF + "semantic-ade20k/maskformer_swin_small_bs16_160k/model_final_528157.pkl", "40846700_5"),
    _sem(C + "maskformer/ade20k-150/swin/maskformer_swin_base_IN21k_384_bs16_160k_res640.yaml", MF, "Swin-B (IN21k)", "160k", 52.7, 53.9, _MF + "semantic-ade20k/maskformer_swin_base_IN21k_384_bs16_160k_res640/model_final_45388b.pkl", "40986951_0"),
    _sem(C + "maskformer/ade20k-150/swin/maskformer_swin_large_IN21k_384_bs16_160k_res640.yaml", MF, "Swin-L (IN21k)", "160k", 54.1, 55.6, _MF + "semantic-ade20k/maskformer_swin_large_IN21k_384_bs16_160k_res640/model_final_aefa3b.pkl", "40846700_0"),
    _sem(C + "maskformer/coco-stuff-10k-171/per_pixel_baseline_R50_bs32_60k.yaml", "PerPixelBaseline", "R50", "60k", 32.4, 34.4, _MF + "semantic-coco-stuff-10k/per_pixel_baseline_R50_bs32_60k/model_final_275ab0.pkl", "40941321_0"),
    _sem(C + "maskformer/coco-stuff-10k-171/per_pixel_baseline_plus_R50_bs32_60k.yaml", "PerPixelBaseline+", "R50", "60k", 34.2, 35.8, _MF + "semantic-coco-stuff-10k/per_pixel_baseline_plus_R50_bs32_60k/model_final_1fa920.pkl", "40941321_3"),
    _sem(C + "maskformer/coco-stuff-10k-171/maskformer_R50_bs32_60k.yaml", MF, "R50", "60k", 37.1, 38.9, _MF + "semantic-coco-stuff-10k/maskformer_R50_bs32_60k/model_final_cb03eb.pkl", "40941321_6"),
    _sem(C + "maskformer/coco-stuff-10k-171/maskformer_R101_bs32_60k.yaml", MF, "R101", "60k", 38.1, 39.8, _MF + "semantic-coco-stuff-10k/maskformer_R101_bs32_60k/model_final_eb19bb.pkl", "40986940_1"),
    _sem(C + "maskformer/coco-stuff-10k-171/maskformer_R101c_bs32_60k.yaml", MF, "R101c", "60k", 38.0, 39.3, _MF + "semantic-coco-stuff-10k/maskformer_R101c_bs32_60k/model_final_bffd25.pkl", "41703904_3"),
    _sem(C + "maskformer/ade20k-full-847/per_pixel_baseline_R50_bs16_200k.yaml", "PerPixelBaseline", "R50", "200k", 12.4, None, _MF + "semantic-ade20k-full/per_pixel_baseline_R50_bs16_200k/model_final_9f66a9.pkl", "40986914_5"),
    _sem(C + "maskformer/ade20k-full-847/per_pixel_baseline_plus_R50_bs16_200k.yaml", "PerPixelBaseline+", "R50", "200k", 13.9, None, _MF + "semantic-ade20k-full/per_pixel_baseline_plus_R50_bs16_200k/model_final_4d31f2.pkl", "40986914_6"),
    _sem(C + "maskformer/ade20k-full-847/maskformer_R50_bs16_200k.yaml", MF, "R50", "200k", 16.0, None, _MF + "semantic-ade20k-full/maskformer_R50_bs16_200k/model_final_f4e3f6.pkl", "40986914_1"),
    _sem(C + "maskformer/ade20k-full-847/maskformer_R101_bs16_200k.yaml", MF, "R101", "200k", 16.8, None, _MF + "semantic-ade20k-full/maskformer_R101_bs16_200k/model_final_88df33.pkl", "40986946_1"),
    _sem(C + "maskformer/ade20k-full-847/maskformer_R101c_bs16_200k.yaml", MF, "R101c", "200k", 17.4, None, _MF + "semantic-ade20k-full/maskformer_R101c_bs16_200k/model_final_75d34e.pkl", "41703904_6"),
    _sem(C + "maskformer/cityscapes-19/maskformer_R101_bs16_90k.yaml", MF, "R101", "90k", 78.5, 80.3, _MF + "semantic-cityscapes/maskformer_R101_bs16_90k/model_final_38c00c.pkl", "41127351_1", key="IoU"),
    _sem(C + "maskformer/cityscapes-19/maskformer_R101c_bs16_90k.yaml", MF, "R101c", "90k", 79.7, 81.4, _MF + "semantic-cityscapes/maskformer_R101c_bs16_90k/model_final_4f8ff9.pkl", "41630444_2", key="IoU"),
    _sem(C + "maskformer/mapillary-vistas-65/maskformer_R50_bs16_300k.yaml", MF, "R50", "300k", 53.1, 55.4, _MF + "semantic-mapillary-vistas/maskformer_R50_bs16_300k/model_final_f3fc73.pkl", "42325118"),
    # ---------------------------------------------------------------- MaskFormer (v1), panoptic
    _pan(C + "maskformer/coco-panoptic/maskformer_panoptic_R50_bs64_554k.yaml", MF, "R50", "554k", 46.5, None, None, _MF + "panoptic-coco/maskformer_panoptic_R50_bs64_554k/model_final_6f60dc.pkl", "42747488_1", note="R50 + 6 encoder layers"),
    _pan(C + "maskformer/coco-panoptic/maskformer_panoptic_R101_bs64_554k.yaml", MF, "R101", "554k", 47.6, None, None, _MF + "panoptic-coco/maskformer_panoptic_R101_bs64_554k/model_final_57b049.pkl", "42747488_0", note="R101 + 6 encoder layers"),
    _pan(C + "maskformer/coco-panoptic/swin/maskformer_panoptic_swin_tiny_bs64_554k.yaml", MF, "Swin-T", "554k", 47.7, None, None, _MF + "panoptic-coco/model_final_539394.pkl", "41143190_0"),
    _pan(C + "maskformer/coco-panoptic/swin/maskformer_panoptic_swin_small_bs64_554k.yaml", MF, "Swin-S", "554k", 49.7, None, None, _MF + "panoptic-coco/model_final_5bf6b1.pkl", "41270920"),
    _pan(C + "maskformer/coco-panoptic/swin/maskformer_panoptic_swin_base_IN21k_384_bs64_554k.yaml", MF, "Swin-B (IN21k)", "554k", 51.8, None, None, _MF + "panoptic-coco/model_final_4b7f49.pkl", "41260906"),
    _pan(C + "maskformer/coco-panoptic/swin/maskformer_panoptic_swin_large_IN21k_384_bs64_554k.yaml", MF, "Swin-L (IN21k)", "554k", 52.7, None, None, _MF + "panoptic-coco/model_final_7505c4.pkl", "43219274", note="trained with MAX_SIZE_TRAIN=1000"),
    _pan(C + "maskformer/ade20k-150-panoptic/maskformer_panoptic_R50_bs16_720k.yaml", MF, "R50", "720k", 34.7, None, None, _MF + "panoptic-ade20k/maskformer_panoptic_R50_bs16_720k/model_final_7aa977.pkl", "42746872_1", note="R50 + 6 encoder layers"),
    _pan(C + "maskformer/ade20k-150-panoptic/maskformer_panoptic_R101_bs16_720k.yaml", MF, "R101", "720k", 35.7, None, None, _MF + "panoptic-ade20k/maskformer_panoptic_R101_bs16_720k/model_final_0b3cc8.pkl", "42747444", note="official table says R50 + 6 Enc (a typo: the config is R101)"),
]

_BY_CONFIG: Dict[str, ZooEntry] = {e.config: e for e in MODEL_ZOO}


def _normalise(config_file: str) -> Optional[str]:
    """``.../configs/a/b.yaml`` -> ``configs/a/b.yaml`` (None outside a ``configs`` folder)."""
    parts = config_file.replace("\\", "/").split("/")
    if "configs" not in parts:
        return None
    index = len(parts) - 1 - parts[::-1].index("configs")
    return "/".join(parts[index:])


def zoo_entry(config_file: str) -> Optional[ZooEntry]:
    """The official checkpoint of a config of this repo (any path ending in ``configs/...``)."""
    key = _normalise(config_file)
    return _BY_CONFIG.get(key) if key else None


def published_results(config_file: str, tolerance: float = TOLERANCE) -> List[List]:
    """``TEST.EXPECTED_RESULTS`` entries ``[task, metric, value, tolerance]`` of a config; [] if none."""
    entry = zoo_entry(config_file)
    return [[task, metric, value, tolerance] for task, metric, value in entry.metrics] if entry else []
