"""The isolation part of a container's config.json: capabilities, device rules, seccomp."""

from __future__ import annotations

from pathlib import Path

from init.services.pod import seccomp, spec


def _config(tmp_path: Path) -> dict[str, object]:
    proc = spec.Process(["sh"], [], "/", 0, 0)
    return spec.config(proc, rootfs=tmp_path, hostname="h", etc_files={})


def test_no_mknod_no_raw_sockets(tmp_path: Path) -> None:
    caps = _config(tmp_path)["process"]["capabilities"]  # type: ignore[index]
    for kind in ("bounding", "effective", "permitted"):
        assert "CAP_MKNOD" not in caps[kind] and "CAP_NET_RAW" not in caps[kind]
        assert "CAP_SYS_ADMIN" not in caps[kind]


def test_devices_deny_all_but_the_harmless(tmp_path: Path) -> None:
    rules = _config(tmp_path)["linux"]["resources"]["devices"]  # type: ignore[index]
    assert rules[0] == {"allow": False, "access": "rwm"}
    allowed = {(r["type"], r["major"], r.get("minor")) for r in rules[1:]}
    assert all(r["allow"] for r in rules[1:])
    assert allowed == {("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 8), ("c", 1, 9),
                       ("c", 5, 0), ("c", 5, 1), ("c", 5, 2), ("c", 136, None)}
    assert not any(r["type"] == "b" for r in rules[1:])  # no block device, ever


def test_seccomp_is_dockers_policy_for_these_capabilities(tmp_path: Path) -> None:
    profile = _config(tmp_path)["linux"]["seccomp"]  # type: ignore[index]
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64"]
    first = profile["syscalls"][0]
    assert first["action"] == "SCMP_ACT_ERRNO" and "unshare" in first["names"]
    # clone with any namespace flag is refused, one rule per flag.
    clones = [r for r in profile["syscalls"] if r["names"] == ["clone"]]
    assert sorted(r["args"][0]["value"] for r in clones) == sorted(
        seccomp.CLONE_NEW_FLAGS.values())
    # A capability Docker gates a call on lets it through.
    assert "mount" not in seccomp.refused_names([*spec.CAPABILITIES, "CAP_SYS_ADMIN"])
    assert "clone" not in {n for r in seccomp.profile(["CAP_SYS_ADMIN"])["syscalls"]
                           for n in r["names"]}
