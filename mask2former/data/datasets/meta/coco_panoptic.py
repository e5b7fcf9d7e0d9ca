"""COCO panoptic categories (panopticapi's panoptic_coco_categories.json): id|isthing|r,g,b|name"""

TABLE = """
1|1|220,20,60|person
2|1|119,11,32|bicycle
3|1|0,0,142|car
4|1|0,0,230|motorcycle
5|1|106,0,228|airplane
6|1|0,60,100|bus
7|1|0,80,100|train
8|1|0,0,70|truck
9|1|0,0,192|boat
10|1|250,170,30|traffic light
11|1|100,170,30|fire hydrant
13|1|220,220,0|stop sign
14|1|175,116,175|parking meter
15|1|250,0,30|bench
16|1|165,42,42|bird
17|1|255,77,255|cat
18|1|0,226,252|dog
19|1|182,182,255|horse
20|1|0,82,0|sheep
21|1|120,166,157|cow
22|1|110,76,0|elephant
23|1|174,57,255|bear
24|1|199,100,0|zebra
25|1|72,0,118|giraffe
27|1|255,179,240|backpack
28|1|0,125,92|umbrella
31|1|209,0,151|handbag
32|1|188,208,182|tie
33|1|0,220,176|suitcase
34|1|255,99,164|frisbee
35|1|92,0,73|skis
36|1|133,129,255|snowboard
37|1|78,180,255|sports ball
38|1|0,228,0|kite
39|1|174,255,243|baseball bat
40|1|45,89,255|baseball glove
41|1|134,134,103|skateboard
42|1|145,148,174|surfboard
43|1|255,208,186|tennis racket
44|1|197,226,255|bottle
46|1|171,134,1|wine glass
47|1|109,63,54|cup
48|1|207,138,255|fork
49|1|151,0,95|knife
50|1|9,80,61|spoon
51|1|84,105,51|bowl
52|1|74,65,105|banana
53|1|166,196,102|apple
54|1|208,195,210|sandwich
55|1|255,109,65|orange
56|1|0,143,149|broccoli
57|1|179,0,194|carrot
58|1|209,99,106|hot dog
59|1|5,121,0|pizza
60|1|227,255,205|donut
61|1|147,186,208|cake
62|1|153,69,1|chair
63|1|3,95,161|couch
64|1|163,255,0|potted plant
65|1|119,0,170|bed
67|1|0,182,199|dining table
70|1|0,165,120|toilet
72|1|183,130,88|tv
73|1|95,32,0|laptop
74|1|130,114,135|mouse
75|1|110,129,133|remote
76|1|166,74,118|keyboard
77|1|219,142,185|cell phone
78|1|79,210,114|microwave
79|1|178,90,62|oven
80|1|65,70,15|toaster
81|1|127,167,115|sink
82|1|59,105,106|refrigerator
84|1|142,108,45|book
85|1|196,172,0|clock
86|1|95,54,80|vase
87|1|128,76,255|scissors
88|1|201,57,1|teddy bear
89|1|246,0,122|hair drier
90|1|191,162,208|toothbrush
92|0|255,255,128|banner
93|0|147,211,203|blanket
95|0|150,100,100|bridge
100|0|168,171,172|cardboard
107|0|146,112,198|counter
109|0|210,170,100|curtain
112|0|92,136,89|door-stuff
118|0|218,88,184|floor-wood
119|0|241,129,0|flower
122|0|217,17,255|fruit
125|0|124,74,181|gravel
128|0|70,70,70|house
130|0|255,228,255|light
133|0|154,208,0|mirror-stuff
138|0|193,0,92|net
141|0|76,91,113|pillow
144|0|255,180,195|platform
145|0|106,154,176|playingfield
147|0|230,150,140|railroad
148|0|60,143,255|river
149|0|128,64,128|road
151|0|92,82,55|roof
154|0|254,212,124|sand
155|0|73,77,174|sea
156|0|255,160,98|shelf
159|0|255,255,255|snow
161|0|104,84,109|stairs
166|0|169,164,131|tent
168|0|225,199,255|towel
171|0|137,54,74|wall-brick
175|0|135,158,223|wall-stone
176|0|7,246,231|wall-tile
177|0|107,255,200|wall-wood
178|0|58,41,149|water-other
180|0|183,121,142|window-blind
181|0|255,73,97|window-other
184|0|107,142,35|tree-merged
185|0|190,153,153|fence-merged
186|0|146,139,141|ceiling-merged
187|0|70,130,180|sky-other-merged
188|0|134,199,156|cabinet-merged
189|0|209,226,140|table-merged
190|0|96,36,108|floor-other-merged
191|0|96,96,96|pavement-merged
192|0|64,170,64|mountain-merged
193|0|152,251,152|grass-merged
194|0|208,229,228|dirt-merged
195|0|206,186,171|paper-merged
196|0|152,161,64|food-other-merged
197|0|116,112,0|building-other-merged
198|0|0,114,143|rock-merged
199|0|102,102,156|wall-other-merged
200|0|250,141,255|rug-merged
"""
