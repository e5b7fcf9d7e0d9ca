"""YouTube-VIS 2019 and 2021 categories (the official Mask2Former / IFC tables): id|r,g,b|name.

Both have 40 thing classes with dataset ids 1..40 (contiguous id = id - 1); the two lists differ.
"""
from __future__ import annotations

from typing import Any, Dict, List

__all__ = ["TABLE_2019", "TABLE_2021", "ytvis_categories", "ytvis_meta"]

TABLE_2019 = """
1|220,20,60|person
2|0,82,0|giant_panda
3|119,11,32|lizard
4|165,42,42|parrot
5|134,134,103|skateboard
6|0,0,142|sedan
7|255,109,65|ape
8|0,226,252|dog
9|5,121,0|snake
10|0,60,100|monkey
11|250,170,30|hand
12|100,170,30|rabbit
13|179,0,194|duck
14|255,77,255|cat
15|120,166,157|cow
16|73,77,174|fish
17|0,80,100|train
18|182,182,255|horse
19|0,143,149|turtle
20|174,57,255|bear
21|0,0,230|motorbike
22|72,0,118|giraffe
23|255,179,240|leopard
24|0,125,92|fox
25|209,0,151|deer
26|188,208,182|owl
27|145,148,174|surfboard
28|106,0,228|airplane
29|0,0,70|truck
30|199,100,0|zebra
31|166,196,102|tiger
32|110,76,0|elephant
33|133,129,255|snowboard
34|0,0,192|boat
35|183,130,88|shark
36|130,114,135|mouse
37|107,142,35|frog
38|0,228,0|eagle
39|174,255,243|earless_seal
40|255,208,186|tennis_racket
"""

TABLE_2021 = """
1|106,0,228|airplane
2|174,57,255|bear
3|255,109,65|bird
4|0,0,192|boat
5|0,0,142|car
6|255,77,255|cat
7|120,166,157|cow
8|209,0,151|deer
9|0,226,252|dog
10|179,0,194|duck
11|174,255,243|earless_seal
12|110,76,0|elephant
13|73,77,174|fish
14|250,170,30|flying_disc
15|0,125,92|fox
16|107,142,35|frog
17|0,82,0|giant_panda
18|72,0,118|giraffe
19|182,182,255|horse
20|255,179,240|leopard
21|119,11,32|lizard
22|0,60,100|monkey
23|0,0,230|motorbike
24|130,114,135|mouse
25|165,42,42|parrot
26|220,20,60|person
27|100,170,30|rabbit
28|183,130,88|shark
29|134,134,103|skateboard
30|5,121,0|snake
31|133,129,255|snowboard
32|188,208,182|squirrel
33|145,148,174|surfboard
34|255,208,186|tennis_racket
35|166,196,102|tiger
36|0,80,100|train
37|0,0,70|truck
38|0,143,149|turtle
39|0,228,0|whale
40|199,100,0|zebra
"""

_TABLES = {2019: TABLE_2019, 2021: TABLE_2021}


def ytvis_categories(year: int) -> List[Dict[str, Any]]:
    """The 40 categories of YouTube-VIS ``year`` (2019 or 2021): ``id``, ``name``, ``color``, ``isthing``."""
    if year not in _TABLES:
        raise ValueError(f"YouTube-VIS year must be one of {sorted(_TABLES)}, got {year!r}")
    categories = []
    for line in _TABLES[year].strip("\n").split("\n"):
        cat_id, color, name = line.split("|")
        categories.append({"id": int(cat_id), "name": name, "color": [int(c) for c in color.split(",")], "isthing": 1})
    return categories


def ytvis_meta(year: int) -> Dict[str, Any]:
    """Metadata of YouTube-VIS ``year``: ``thing_classes``, ``thing_colors`` and the dataset id ->
    contiguous id map, as the official ``_get_ytvis_{2019,2021}_instances_meta``."""
    cats = ytvis_categories(year)
    return {
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(cats)},
        "thing_classes": [c["name"] for c in cats],
        "thing_colors": [c["color"] for c in cats],
    }
