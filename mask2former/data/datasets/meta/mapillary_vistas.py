"""Mapillary Vistas v1.2 66 categories (Mask2Former register_mapillary_vistas.py): instances|r,g,b|readable|name
The last one (void--unlabeled) is not evaluated; the 65 others are the semantic classes."""

TABLE = """
1|165,42,42|Bird|animal--bird
1|0,192,0|Ground Animal|animal--ground-animal
0|196,196,196|Curb|construction--barrier--curb
0|190,153,153|Fence|construction--barrier--fence
0|180,165,180|Guard Rail|construction--barrier--guard-rail
0|90,120,150|Barrier|construction--barrier--other-barrier
0|102,102,156|Wall|construction--barrier--wall
0|128,64,255|Bike Lane|construction--flat--bike-lane
1|140,140,200|Crosswalk - Plain|construction--flat--crosswalk-plain
0|170,170,170|Curb Cut|construction--flat--curb-cut
0|250,170,160|Parking|construction--flat--parking
0|96,96,96|Pedestrian Area|construction--flat--pedestrian-area
0|230,150,140|Rail Track|construction--flat--rail-track
0|128,64,128|Road|construction--flat--road
0|110,110,110|Service Lane|construction--flat--service-lane
0|244,35,232|Sidewalk|construction--flat--sidewalk
0|150,100,100|Bridge|construction--structure--bridge
0|70,70,70|Building|construction--structure--building
0|150,120,90|Tunnel|construction--structure--tunnel
1|220,20,60|Person|human--person
1|255,0,0|Bicyclist|human--rider--bicyclist
1|255,0,100|Motorcyclist|human--rider--motorcyclist
1|255,0,200|Other Rider|human--rider--other-rider
1|200,128,128|Lane Marking - Crosswalk|marking--crosswalk-zebra
0|255,255,255|Lane Marking - General|marking--general
0|64,170,64|Mountain|nature--mountain
0|230,160,50|Sand|nature--sand
0|70,130,180|Sky|nature--sky
0|190,255,255|Snow|nature--snow
0|152,251,152|Terrain|nature--terrain
0|107,142,35|Vegetation|nature--vegetation
0|0,170,30|Water|nature--water
1|255,255,128|Banner|object--banner
1|250,0,30|Bench|object--bench
1|100,140,180|Bike Rack|object--bike-rack
1|220,220,220|Billboard|object--billboard
1|220,128,128|Catch Basin|object--catch-basin
1|222,40,40|CCTV Camera|object--cctv-camera
1|100,170,30|Fire Hydrant|object--fire-hydrant
1|40,40,40|Junction Box|object--junction-box
1|33,33,33|Mailbox|object--mailbox
1|100,128,160|Manhole|object--manhole
1|142,0,0|Phone Booth|object--phone-booth
0|70,100,150|Pothole|object--pothole
1|210,170,100|Street Light|object--street-light
1|153,153,153|Pole|object--support--pole
1|128,128,128|Traffic Sign Frame|object--support--traffic-sign-frame
1|0,0,80|Utility Pole|object--support--utility-pole
1|250,170,30|Traffic Light|object--traffic-light
1|192,192,192|Traffic Sign (Back)|object--traffic-sign--back
1|220,220,0|Traffic Sign (Front)|object--traffic-sign--front
1|140,140,20|Trash Can|object--trash-can
1|119,11,32|Bicycle|object--vehicle--bicycle
1|150,0,255|Boat|object--vehicle--boat
1|0,60,100|Bus|object--vehicle--bus
1|0,0,142|Car|object--vehicle--car
1|0,0,90|Caravan|object--vehicle--caravan
1|0,0,230|Motorcycle|object--vehicle--motorcycle
0|0,80,100|On Rails|object--vehicle--on-rails
1|128,64,64|Other Vehicle|object--vehicle--other-vehicle
1|0,0,110|Trailer|object--vehicle--trailer
1|0,0,70|Truck|object--vehicle--truck
1|0,0,192|Wheeled Slow|object--vehicle--wheeled-slow
0|32,32,32|Car Mount|void--car-mount
0|120,10,10|Ego Vehicle|void--ego-vehicle
0|0,0,0|Unlabeled|void--unlabeled
"""
