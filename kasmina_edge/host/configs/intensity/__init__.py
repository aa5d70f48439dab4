"""The intensity config library: one TOML file per config (kasmina_edge.host.intensity reads them)."""
