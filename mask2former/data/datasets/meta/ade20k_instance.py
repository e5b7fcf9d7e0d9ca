"""ADE20K instance-segmentation 100 thing categories (Mask2Former register_ade20k_instance.py): id|name"""

TABLE = """
7|bed
8|windowpane
10|cabinet
12|person
14|door
15|table
18|curtain
19|chair
20|car
22|painting
23|sofa
24|shelf
27|mirror
30|armchair
31|seat
32|fence
33|desk
35|wardrobe
36|lamp
37|bathtub
38|railing
39|cushion
41|box
42|column
43|signboard
44|chest of drawers
45|counter
47|sink
49|fireplace
50|refrigerator
53|stairs
55|case
56|pool table
57|pillow
58|screen door
62|bookcase
64|coffee table
65|toilet
66|flower
67|book
69|bench
70|countertop
71|stove
72|palm
73|kitchen island
74|computer
75|swivel chair
76|boat
78|arcade machine
80|bus
81|towel
82|light
83|truck
85|chandelier
86|awning
87|streetlight
88|booth
89|television receiver
90|airplane
92|apparel
93|pole
95|bannister
97|ottoman
98|bottle
102|van
103|ship
104|fountain
107|washer
108|plaything
110|stool
111|barrel
112|basket
115|bag
116|minibike
118|oven
119|ball
120|food
121|step
123|trade name
124|microwave
125|pot
126|animal
127|bicycle
129|dishwasher
130|screen
132|sculpture
133|hood
134|sconce
135|vase
136|traffic light
137|tray
138|ashcan
139|fan
142|plate
143|monitor
144|bulletin board
146|radiator
147|glass
148|clock
149|flag
"""
