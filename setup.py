"""Package list only: the top-level targets/ and profiles/ folders ship inside the wheel as
kasmina_edge._data.*, which find_packages cannot discover (they are not under kasmina_edge/).
Everything else lives in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["kasmina_edge*", "firmware_sim*"])
    + ["kasmina_edge._data.targets", "kasmina_edge._data.profiles"]
)
