"""The kernel: errors, paths, atomic writes, provenance, device and schedule helpers.

Everything else may import from here; nothing here imports from the rest of the project.
"""
