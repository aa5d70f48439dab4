"""kasmina_edge.ecg"""
