"""The image service: pulls OCI images from registries and unpacks a rootfs per image.

- `reference`: parsing and normalising `[registry/]repository[:tag][@digest]`
- `registry`: the distribution API v2 client (auth, redirects, retries, resumable blobs)
- `tls`: what is trusted and when plain HTTP may be used; `connections`: cancellable connections
- `auth`: the credentials file and WWW-Authenticate challenges
- `manifest`: manifests, indexes, platform choice; `imageconfig`: the image config
- `store`: content-addressed blobs, metadata and rootfs directories, atomic and locked
- `unpack`: applying layers safely; `tarstream`: reading a layer's tar within bounds
- `puller`: one pull end to end
- `service`: `ImageService`, the object the API and the pod service use

Heavy modules (http.client, ssl, tarfile, gzip, zstd) load on the first pull, not at boot.
"""

from init.services.image.errors import (
    ImageError,
    ImageInUse,
    ImageNotFound,
    InvalidReference,
)
from init.services.image.service import Image, ImageService

__all__ = ["Image", "ImageError", "ImageInUse", "ImageNotFound", "ImageService",
           "InvalidReference"]
