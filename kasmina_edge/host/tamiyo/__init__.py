"""Tamiyo: the controller that decides when, where, what and how fast a seed grows."""
