"""The init's gRPC API (proto/one.proto: the wire contract with upstream's host side).

- `listeners`: the pre-bound listening socket (vsock in a VM, unix or TCP in local mode).
- `server`: starts grpclib on that socket; grpclib and the messages are imported only here,
  lazily, so the phases before the API do not pay for them.
- `wire`, `codec`: the messages' proto3 encoding (plain classes generated into
  `oneproto/one_msgs.py`), byte for byte protobuf's, without google.protobuf in the init.
- `service`: the OneService handlers; every handler runs inside a guard that turns a service
  error into its gRPC status and an unexpected exception into INTERNAL for that one call.
- `images`, `pods`: the image and pod RPCs, messages in and out over the services.
- `ready`: the READY line to the host (CID 2) once the API serves.
"""
