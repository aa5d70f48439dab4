"""kasmina_edge.curriculum: the engine (blueprints, KasminaLayer, lifecycle, Tamiyo) exercised beyond ECG.

Stages 0-6, each a domain with its own metric and target: toy 2-D sets (0-1), corrupted digits (2), ECG (3),
a tiny image-text retrieval task (4), edge deployment on the emulator (5-6). Every stage reports the base,
the base with seeds and full fine-tuning side by side (:mod:`.stage`); :mod:`.runner` walks them in order.
"""
