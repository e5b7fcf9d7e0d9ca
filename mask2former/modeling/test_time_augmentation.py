"""``SemanticSegmentorWithTTA``: semantic segmentation averaged over test-time augmentations."""
from __future__ import annotations

from typing import Any, Callable, Dict, List

import torch
from fvcore.transforms import HFlipTransform
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["SemanticSegmentorWithTTA"]


class SemanticSegmentorWithTTA(nn.Module):
    """Runs ``model`` on every augmented copy of each input and averages their ``sem_seg``.

    The copies come from ``tta_mapper`` (the engine passes ``DatasetMapperTTA``: each short-edge
    size of ``TEST.AUG.MIN_SIZES``, capped by ``TEST.AUG.MAX_SIZE``, with and without a
    horizontal flip when ``TEST.AUG.FLIP``). Each copy keeps the input's ``height`` / ``width``,
    so the model returns its ``sem_seg`` (K, height, width) at the original resolution; a copy
    whose ``transforms`` contain an ``HFlipTransform`` is flipped back, and the result is the
    plain mean over copies — of probabilities for Mask2Former / MaskFormer, of whatever scores
    the per-pixel baselines return (as the official Mask2Former wrapper does).

    Same call interface as the wrapped model in inference: a list of input dicts (each with
    ``image``) in, a list of ``{"sem_seg": (K, height, width)}`` out.

    Args:
        model: a semantic-segmentation-capable model in inference; a DistributedDataParallel
            wrapper is unwrapped.
        tta_mapper: input dict -> list of augmented copies, each with ``image`` and ``transforms``.
    """

    def __init__(self, model: nn.Module, *, tta_mapper: Callable[[Dict[str, Any]], List[Dict[str, Any]]]):
        super().__init__()
        if isinstance(model, DistributedDataParallel):
            model = model.module
        self.model = model
        self.tta_mapper = tta_mapper

    def forward(self, batched_inputs: List[Dict[str, Any]]) -> List[Dict[str, torch.Tensor]]:
        return [self._inference_one_image(x) for x in batched_inputs]

    def _inference_one_image(self, inp: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        if "image" not in inp:
            raise KeyError("SemanticSegmentorWithTTA needs inputs with 'image' (C, H, W), as the test mapper gives")
        copies = self.tta_mapper(inp)
        total = None
        with torch.no_grad():
            for dic in copies:
                tfm = dic.pop("transforms")
                output = self.model([dic])[0]
                if "sem_seg" not in output:
                    raise KeyError(
                        "SemanticSegmentorWithTTA: the model returned no 'sem_seg' "
                        "(for Mask2Former / MaskFormer set MODEL.MASK_FORMER.TEST.SEMANTIC_ON True)"
                    )
                sem_seg = output["sem_seg"]  # (K, height, width)
                if any(isinstance(t, HFlipTransform) for t in tfm.transforms):
                    sem_seg = sem_seg.flip(dims=[2])
                total = sem_seg.clone() if total is None else total + sem_seg
        if total is None:
            raise ValueError("SemanticSegmentorWithTTA: tta_mapper returned no augmented copy")
        return {"sem_seg": total / len(copies)}
