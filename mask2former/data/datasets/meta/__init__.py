"""Built-in category tables (names, dataset ids, colours) of the standard datasets, and the
metadata dicts derived from them exactly as detectron2 / Mask2Former derive theirs.

Each table module holds one ``TABLE`` string, one category per line, fields separated by ``|``;
the 847-class ADE20K-full table is a data file, ``ade20k_full.json`` (``[{"id", "name"}, ...]``
in contiguous-id order), shipped as package data.
"""
from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any, Dict, List

from . import ade20k_150, ade20k_instance, cityscapes, coco_panoptic, coco_stuff, mapillary_vistas

__all__ = [
    "ade20k_150_categories",
    "ade20k_full_meta",
    "ade20k_instance_meta",
    "ade20k_panoptic_meta",
    "ade20k_sem_seg_classes",
    "cityscapes_categories",
    "cityscapes_meta",
    "cityscapes_panoptic_meta",
    "coco_categories",
    "coco_instances_meta",
    "coco_panoptic_meta",
    "coco_panoptic_standard_meta",
    "coco_stuff_meta",
    "mapillary_vistas_meta",
    "mapillary_vistas_panoptic_meta",
]


def _rows(table: str) -> List[List[str]]:
    return [line.split("|") for line in table.strip("\n").split("\n") if line]


def _color(text: str) -> List[int]:
    return [int(c) for c in text.split(",")]


@functools.lru_cache(maxsize=None)
def _coco() -> tuple:
    return tuple(
        {"color": _color(c), "isthing": int(t), "id": int(i), "name": n}
        for i, t, c, n in _rows(coco_panoptic.TABLE)
    )


def coco_categories() -> List[Dict[str, Any]]:
    """The 133 COCO panoptic categories (80 things then 53 stuff), as detectron2's COCO_CATEGORIES."""
    return [dict(c, color=list(c["color"])) for c in _coco()]


def coco_instances_meta() -> Dict[str, Any]:
    """detectron2 "coco": the 80 thing classes, their colours and sparse id -> 0..79."""
    things = [k for k in _coco() if k["isthing"]]
    return {
        "thing_dataset_id_to_contiguous_id": {k["id"]: i for i, k in enumerate(things)},
        "thing_classes": [k["name"] for k in things],
        "thing_colors": [list(k["color"]) for k in things],
    }


def _panoptic_meta(categories, *, stuff_includes_things: bool, thing_classes_all: bool) -> Dict[str, Any]:
    """Shared recipe: contiguous id = position in ``categories``."""
    things = [k for k in categories if k["isthing"]]
    shown = categories if thing_classes_all else things
    thing_map, stuff_map = {}, {}
    for i, cat in enumerate(categories):
        if cat["isthing"]:
            thing_map[cat["id"]] = i
        if stuff_includes_things or not cat["isthing"]:
            stuff_map[cat["id"]] = i
    return {
        "thing_classes": [k["name"] for k in shown],
        "thing_colors": [list(k["color"]) for k in shown],
        "stuff_classes": [k["name"] for k in categories],
        "stuff_colors": [list(k["color"]) for k in categories],
        "thing_dataset_id_to_contiguous_id": thing_map,
        "stuff_dataset_id_to_contiguous_id": stuff_map,
    }


def coco_panoptic_standard_meta() -> Dict[str, Any]:
    """detectron2 "coco_panoptic_standard" (``thing_classes`` lists all 133; stuff map: stuff only)."""
    return _panoptic_meta(list(_coco()), stuff_includes_things=False, thing_classes_all=True)


def coco_panoptic_meta() -> Dict[str, Any]:
    """Mask2Former's COCO panoptic metadata: 80 thing classes; the stuff map covers all 133 ids
    (so the semantic evaluator can use it), things -> 0..79, stuff -> 80..132."""
    return _panoptic_meta(list(_coco()), stuff_includes_things=True, thing_classes_all=False)


def coco_stuff_meta() -> Dict[str, Any]:
    """COCO-Stuff 171 classes: COCO's 80 things then 91 stuff (ids 92..182)."""
    cats = [(k["id"], k["name"]) for k in _coco() if k["isthing"]]
    cats += [(int(i), n) for i, n in _rows(coco_stuff.TABLE)]
    return {
        "stuff_dataset_id_to_contiguous_id": {i: idx for idx, (i, _) in enumerate(cats)},
        "stuff_classes": [n for _, n in cats],
    }


@functools.lru_cache(maxsize=None)
def _ade150() -> tuple:
    return tuple(
        {"color": _color(c), "id": int(i), "isthing": int(t), "name": n}
        for i, t, c, n in _rows(ade20k_150.TABLE)
    )


def ade20k_150_categories() -> List[Dict[str, Any]]:
    """ADE20K SceneParsing 150 categories with id, isthing and colour."""
    return [dict(c, color=list(c["color"])) for c in _ade150()]


def ade20k_sem_seg_classes() -> List[str]:
    """The 150 ADE20K semantic class names (detectron2's ADE20K_SEM_SEG_CATEGORIES)."""
    return [k["name"] for k in _ade150()]


def ade20k_panoptic_meta() -> Dict[str, Any]:
    """Mask2Former's ADE20K panoptic metadata (stuff map covers all 150)."""
    return _panoptic_meta(list(_ade150()), stuff_includes_things=True, thing_classes_all=False)


def ade20k_instance_meta() -> Dict[str, Any]:
    """The 100 ADE20K instance classes with id -> 0..99."""
    rows = _rows(ade20k_instance.TABLE)
    return {
        "thing_dataset_id_to_contiguous_id": {int(i): idx for idx, (i, _) in enumerate(rows)},
        "thing_classes": [n for _, n in rows],
    }


def ade20k_full_meta() -> Dict[str, Any]:
    """ADE20K-full 847 classes with dataset id -> contiguous id."""
    rows = json.loads(resources.files(__package__).joinpath("ade20k_full.json").read_text(encoding="utf-8"))
    return {
        "stuff_dataset_id_to_contiguous_id": {int(r["id"]): idx for idx, r in enumerate(rows)},
        "stuff_classes": [r["name"] for r in rows],
    }


@functools.lru_cache(maxsize=None)
def _cityscapes() -> tuple:
    return tuple(
        {"color": tuple(_color(c)), "isthing": int(t), "id": int(i), "trainId": idx, "name": n}
        for idx, (i, t, c, n) in enumerate(_rows(cityscapes.TABLE))
    )


def cityscapes_categories() -> List[Dict[str, Any]]:
    """The 19 evaluated Cityscapes categories (detectron2's CITYSCAPES_CATEGORIES)."""
    return [dict(c) for c in _cityscapes()]


def cityscapes_meta() -> Dict[str, Any]:
    """detectron2 "cityscapes": 8 thing classes and 19 stuff classes (semantic / instance)."""
    return {
        "thing_classes": [k["name"] for k in _cityscapes() if k["isthing"]],
        "stuff_classes": [k["name"] for k in _cityscapes()],
    }


def cityscapes_panoptic_meta() -> Dict[str, Any]:
    """detectron2's Cityscapes panoptic metadata (ids -> trainIds)."""
    cats = _cityscapes()
    return {
        "thing_classes": [k["name"] for k in cats],
        "thing_colors": [k["color"] for k in cats],
        "stuff_classes": [k["name"] for k in cats],
        "stuff_colors": [k["color"] for k in cats],
        "thing_dataset_id_to_contiguous_id": {k["id"]: k["trainId"] for k in cats if k["isthing"]},
        "stuff_dataset_id_to_contiguous_id": {k["id"]: k["trainId"] for k in cats if not k["isthing"]},
    }


@functools.lru_cache(maxsize=None)
def _mapillary() -> tuple:
    return tuple(
        {"isthing": int(t), "color": _color(c), "readable": r, "name": n}
        for t, c, r, n in _rows(mapillary_vistas.TABLE)
    )


def mapillary_vistas_meta() -> Dict[str, Any]:
    """Mapillary Vistas semantic metadata: the 65 evaluated classes (readable names) and colours."""
    cats = _mapillary()[:65]
    return {"stuff_classes": [k["readable"] for k in cats], "stuff_colors": [list(k["color"]) for k in cats]}


def mapillary_vistas_panoptic_meta() -> Dict[str, Any]:
    """Mask2Former's Mapillary Vistas panoptic metadata (ids 1..65; thing_classes lists all 65)."""
    cats = [
        {"color": list(k["color"]), "id": idx + 1, "isthing": k["isthing"], "name": k["readable"]}
        for idx, k in enumerate(_mapillary()[:65])
    ]
    return _panoptic_meta(cats, stuff_includes_things=True, thing_classes_all=True)
