"""The pod service: pods of containers from images, their states, logs and exec.

- `ids`: the id rules (no id reaches a path unchecked); `errors`: errors with their gRPC status
- `spec`: the OCI runtime spec of one container (Docker's rules over the image config)
- `rootfs`: a private root per container (overlayfs over the image, or a copy)
- `logs`: reading log files with tail and follow; `service`: `PodService` (its RPCs: init/api)
"""
