"""The task service: containers as processes of an OCI runtime (crun, runc, youki...).

`runtime` drives the OCI runtime command line; `exec` runs a process inside a running container.
Everything is started with init.system.spawn and waited for through the one reaper.
"""
