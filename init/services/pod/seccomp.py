"""The seccomp filter of every container: Docker's default policy, written as what it refuses.

Docker's default profile allows a list of system calls and answers EPERM to the rest. The kernel
here is pinned (kernel.version), so the same policy is written the other way round: every system
call of that kernel is allowed except those below, which Docker's profile does not allow to a
container without the capability named beside them. tests/buildsteps/test_seccomp.py checks the
list against the built kernel's system call table (every name here exists), and the VM test
checks that a container meets EPERM for them.

Only the x86-64 ABI is listed: a system call through another ABI (i386's int 0x80, x32) is
refused by the filter's architecture check whatever its number.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

CLONE_NEW_FLAGS = {  # the namespaces clone(2) may create
    "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
AF_VSOCK = 40


@dataclass(frozen=True)
class Refused:
    names: tuple[str, ...]
    unless: str | None  # the capability that lets Docker allow them; None: never
    why: str


REFUSED: tuple[Refused, ...] = (
    Refused(("mount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick",
             "move_mount", "open_tree", "mount_setattr"), "CAP_SYS_ADMIN",
            "mounting: a container's mounts are made for it by the runtime"),
    Refused(("unshare", "setns"), "CAP_SYS_ADMIN",
            "new namespaces, user namespaces included: the kernel's largest attack surface"),
    Refused(("bpf", "perf_event_open", "fanotify_init", "lookup_dcookie", "quotactl",
             "quotactl_fd", "syslog", "sethostname", "setdomainname"), "CAP_SYS_ADMIN",
            "administration of the whole VM"),
    Refused(("add_key", "keyctl", "request_key"), None,
            "the kernel keyring is not namespaced"),
    Refused(("init_module", "finit_module", "delete_module", "create_module", "query_module",
             "get_kernel_syms"), "CAP_SYS_MODULE", "kernel modules"),
    Refused(("kexec_load", "kexec_file_load", "reboot"), "CAP_SYS_BOOT",
            "replacing or stopping the VM's kernel"),
    Refused(("acct",), "CAP_SYS_PACCT", "process accounting"),
    Refused(("swapon", "swapoff"), "CAP_SYS_ADMIN", "swap"),
    Refused(("settimeofday", "clock_settime"), "CAP_SYS_TIME", "the clock is not namespaced"),
    Refused(("iopl", "ioperm"), "CAP_SYS_RAWIO", "I/O ports"),
    Refused(("kcmp", "pidfd_getfd", "process_madvise"), "CAP_SYS_PTRACE",
            "reaching into other processes"),
    Refused(("vhangup",), "CAP_SYS_TTY_CONFIG", "terminals"),
    Refused(("get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind",
             "migrate_pages", "move_pages"), "CAP_SYS_NICE", "NUMA placement"),
    Refused(("open_by_handle_at",), "CAP_DAC_READ_SEARCH",
            "opening files by handle walks past the container's root"),
    Refused(("userfaultfd",), None, "a tool of kernel exploits"),
    Refused(("io_uring_setup", "io_uring_enter", "io_uring_register"), None,
            "io_uring: a large surface, outside seccomp's view"),
    Refused(("_sysctl", "uselib", "ustat", "sysfs", "nfsservctl", "afs_syscall", "getpmsg",
             "putpmsg", "security", "tuxcall", "vserver"), None, "obsolete or unimplemented"),
)


def _rule(names: Iterable[str], action: str, *, args: Sequence[dict[str, Any]] = (),
          errno_ret: int = errno.EPERM) -> dict[str, Any]:
    rule: dict[str, Any] = {"names": sorted(names), "action": action, "errnoRet": errno_ret}
    if args:
        rule["args"] = list(args)
    return rule


def refused_names(capabilities: Iterable[str]) -> list[str]:
    held = set(capabilities)
    return sorted(n for r in REFUSED if r.unless is None or r.unless not in held
                  for n in r.names)


def profile(capabilities: Iterable[str]) -> dict[str, Any]:
    """config.json's `linux.seccomp` for a container holding `capabilities`."""
    held = set(capabilities)
    syscalls = [_rule(refused_names(held), "SCMP_ACT_ERRNO")]
    if "CAP_SYS_ADMIN" not in held:
        # clone with a namespace flag, one rule per flag (rules for one call are alternatives);
        # clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libc use clone.
        syscalls += [_rule(["clone"], "SCMP_ACT_ERRNO", args=[
            {"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}])
            for flag in CLONE_NEW_FLAGS.values()]
        syscalls.append(_rule(["clone3"], "SCMP_ACT_ERRNO", errno_ret=errno.ENOSYS))
    # vsock: the host's door into the VM is the init's, not a container's.
    syscalls.append(_rule(["socket"], "SCMP_ACT_ERRNO", args=[
        {"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_EQ"}], errno_ret=errno.EAFNOSUPPORT))
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": syscalls}
