"""The init's gRPC API (proto/one.proto, the wire contract in API.md).

- `listeners`: the pre-bound listening socket (vsock in a VM, unix or TCP in local mode).
- `server`: starts grpclib on that socket; grpclib and protobuf are imported only here, lazily, so
  the phases before the API do not pay for them.
- `service`: the OneService handlers; every handler runs inside a guard that turns an unexpected
  exception into INTERNAL for that one call.
- `netinfo`: GetNetworkInfo's data, read from live netlink state and /etc/resolv.conf.
- `pods`: the small interface the pod service implements for Health and Shutdown.
- `ready`: the READY line to the host (CID 2) once the API serves.
"""
