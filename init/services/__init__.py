"""The init's services: plain objects the entry point wires together (no globals).

- `image`: pulls OCI images from registries, keeps a content-addressed store and unpacks a rootfs
  per image.
"""
