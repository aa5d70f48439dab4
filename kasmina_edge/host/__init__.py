"""kasmina_edge.host: the torch side (blueprints, Kasmina seed layer and lifecycle, Tamiyo, train, morph).

Import the subpackages you need (``kasmina_edge.host.blueprints``, ``kasmina_edge.host.kasmina``);
this package itself imports nothing heavy so ``import kasmina_edge.host`` stays cheap.
"""
