"""kasmina_edge.net"""
