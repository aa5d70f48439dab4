"""kasmina_edge.host"""
