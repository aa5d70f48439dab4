"""kasmina_edge.compile"""
