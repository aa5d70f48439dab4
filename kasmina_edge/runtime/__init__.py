"""kasmina_edge.runtime"""
