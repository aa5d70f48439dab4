"""kasmina_edge.profiler"""
