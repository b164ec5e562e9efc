"""The datacenter / rolling-blackout study.

Nouns, one module each: scenario, zones, footprint, loadshape (the day), datacenters (placement), demand
(operating states), blocks, rotation, screening (violations and attribution), ladder. Verbs: acsolve (the one
seam to the AC engine), search (limits), policy (the ladder's order), verify (AC per interval), tables and
report/plots (output). run.py strings them together; command.py is the CLI.
"""
