"""``cupyx`` stand-in (see ``cupy/__init__.py``): the sparse pieces the GPU backend uses."""
