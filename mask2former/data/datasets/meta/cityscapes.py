"""Cityscapes evaluated categories (cityscapesScripts labels.py): id|isthing|r,g,b|name ; trainId = row index"""

TABLE = """
7|0|128,64,128|road
8|0|244,35,232|sidewalk
11|0|70,70,70|building
12|0|102,102,156|wall
13|0|190,153,153|fence
17|0|153,153,153|pole
19|0|250,170,30|traffic light
20|0|220,220,0|traffic sign
21|0|107,142,35|vegetation
22|0|152,251,152|terrain
23|0|70,130,180|sky
24|1|220,20,60|person
25|1|255,0,0|rider
26|1|0,0,142|car
27|1|0,0,70|truck
28|1|0,60,100|bus
31|1|0,80,100|train
32|1|0,0,230|motorcycle
33|1|119,11,32|bicycle
"""
