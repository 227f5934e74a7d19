"""The initramfs: skeleton + frozen init + OCI runtime + CA bundle + host programs + libraries.

The tree is assembled in target/initramfs.root/, checked with pyelftools (every ELF loadable from
the tree alone), then archived by our own reproducible cpio writer and gzip with a fixed header,
so two builds from clean give the same sha256.

The tree is merged-/usr (/lib, /lib64, /bin, /sbin are links into /usr), and everything large
lives under /usr: the archive carries /usr as one compressed, read-only squashfs image (usrimage)
that /init, a small static program (preinit), mounts before it execs the Python init. Only what
is used of it is decompressed, into page cache the kernel can drop; the rest of the root (/etc,
mount points, /init) is a few KB of ramfs. What the boot never reads (LAZY) moves to a second,
smaller and slower image mounted on /usr/lazy, and its paths in /usr become links there.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
from pathlib import Path

from onebuild import cacerts, cpio, elfdeps, freeze, paths, preinit, reproducible, runtime, usrimage
from onebuild.tools import BuildError, run, step

SKELETON = paths.ROOT / "initramfs" / "rootfs"
TREE = paths.TARGET / "initramfs.root"
CPIO_GZ = paths.TARGET / "initramfs.cpio.gz"
CPIO_ZST = paths.TARGET / "initramfs.cpio.zst"  # what the UKI carries
MANIFEST = paths.TARGET / "initramfs.tree.txt"
USR_SQUASHFS = paths.TARGET / "initramfs.usr.squashfs"  # the tree's /usr, as the archive has it
LAZY_SQUASHFS = paths.TARGET / "initramfs.usr-lazy.squashfs"  # the tree's /usr/lazy
OUTPUTS = (TREE, CPIO_GZ, CPIO_ZST, MANIFEST, USR_SQUASHFS, LAZY_SQUASHFS)
ROOTFS_IMAGE = paths.TARGET / "rootfs.raw"
USR = "usr"  # the read-only part of the tree, archived as USR_IMAGE and mounted there
USR_IMAGE = "usr.squashfs"  # in the archive's root
LAZY = "usr/lazy"  # where LAZY_IMAGE is mounted, a directory of the /usr image
LAZY_IMAGE = "usr-lazy.squashfs"  # in the archive's root
IMAGES = ((USR_IMAGE, USR), (LAZY_IMAGE, LAZY))  # (image, mount point), mounted in this order
INIT_DIR = "usr/lib/mvirt-one"  # the onedir bundle; /init (preinit) execs its executable
BUNDLE_LIBS = (f"{INIT_DIR}/_internal",)
# Where elfdeps looks for a bundle library: the bundle, and its copy of the layout under LAZY for
# the files moved there (the loader, given a link, searches the link's directory: same names).
LIB_DIRS = (*BUNDLE_LIBS, *(f"{LAZY}/{Path(d).relative_to(USR)}" for d in BUNDLE_LIBS))
# merged /usr, as Debian has it: the loader, libraries and programs all come from the image
USR_LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
# The init runs its OCI runtime by this name, whichever runtime was shipped (RUNTIME=path): a link
# to the binary, which keeps its own name beside it.
OCI_RUNTIME_LINK = "usr/bin/oci-runtime"
# Host programs the init runs, copied from Debian (their libraries follow through elfdeps):
# tree path -> (host path, Debian package). mke2fs formats a blank data disk (`mke2fs -t ext4
# -L LABEL DEVICE`) with Debian's defaults from mke2fs.conf; e2fsck checks one before its mount.
HOST_FILES = {
    "usr/sbin/mke2fs": (Path("/sbin/mke2fs"), "e2fsprogs"),
    "usr/sbin/e2fsck": (Path("/sbin/e2fsck"), "e2fsprogs"),
    "etc/mke2fs.conf": (Path("/etc/mke2fs.conf"), "e2fsprogs"),
}
HOST_LINKS = {"usr/sbin/mkfs.ext4": "mke2fs"}  # link -> target, as Debian has them

# What the boot does not read, moved to the lazy image (usrimage.LAZY_COMPRESSION) at the same
# path under LAZY: tree-relative patterns of regular files, each of which must match.
LAZY_FILES = (
    # OpenSSL: only the first pull loads it (init/openssl.py keeps it out of the boot's imports).
    f"{INIT_DIR}/_internal/libcrypto.so.*",
    f"{INIT_DIR}/_internal/libssl.so.*",
    f"{INIT_DIR}/_internal/python3.*/lib-dynload/_ssl.*.so",
    f"{INIT_DIR}/_internal/python3.*/lib-dynload/_hashlib.*.so",
    # The OCI runtime: run for the first pod (at boot only to clean up after an unclean stop).
    f"{runtime.INITRAMFS_BIN_DIR.lstrip('/')}/*",
    # mke2fs, e2fsck and the libraries only they load: run at boot only with a data disk.
    "usr/sbin/mke2fs",
    "usr/sbin/e2fsck",
    "usr/lib/x86_64-linux-gnu/libext2fs.so.*",
    "usr/lib/x86_64-linux-gnu/libe2p.so.*",
    "usr/lib/x86_64-linux-gnu/libcom_err.so.*",
    "usr/lib/x86_64-linux-gnu/libblkid.so.*",
    "usr/lib/x86_64-linux-gnu/libuuid.so.*",
)

# Mount points and data directories the init expects to exist.
DIRECTORIES = ("proc", "sys", "dev", "run", "tmp", "root", "usr/bin", "usr/sbin", "usr/lib",
               "usr/lib64", LAZY, "var/lib/mvirt-one", "etc/mvirt-one/boot.d")

# Python reads /dev/urandom before our code runs, and the kernel opens /dev/console for /init's
# stdio before devtmpfs is mounted: both must exist in the archive.
DEVICES = (
    cpio.DeviceNode("dev/console", stat.S_IFCHR | 0o600, 5, 1),
    cpio.DeviceNode("dev/null", stat.S_IFCHR | 0o666, 1, 3),
    cpio.DeviceNode("dev/urandom", stat.S_IFCHR | 0o666, 1, 9),
)


def _copy_skeleton(tree: Path) -> None:
    shutil.copytree(SKELETON, tree, symlinks=True, ignore=shutil.ignore_patterns(".keep"))
    for d in DIRECTORIES:
        (tree / d).mkdir(parents=True, exist_ok=True)
    (tree / "tmp").chmod(0o1777)
    for link, target in USR_LINKS.items():
        (tree / link).symlink_to(target)


def _install_init(tree: Path, frozen: Path) -> None:
    if not (frozen / freeze.NAME).exists():
        raise BuildError(f"{frozen / freeze.NAME} is missing: run `doit init` first")
    shutil.copytree(frozen, tree / INIT_DIR, symlinks=True)
    preinit.build(tree / "init", init=f"/{INIT_DIR}/{freeze.NAME}",
                  images=[(f"/{image}", f"/{mount}") for image, mount in IMAGES])


def _install_runtime(tree: Path, runtime_dir: Path) -> str:
    """The runtime at its path_in_initramfs and OCI_RUNTIME_LINK pointing at it."""
    info = runtime.runtime_info(runtime_dir)
    dest = tree / str(info["path_in_initramfs"]).lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(runtime_dir / str(info["name"]), dest)
    dest.chmod(0o755)
    link = tree / OCI_RUNTIME_LINK
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(dest, link.parent))
    return str(info["path_in_initramfs"])


def _install_host_files(tree: Path) -> None:
    for rel, (host, package) in HOST_FILES.items():
        if not host.is_file():
            raise BuildError(f"{host} not found: install it with `apt-get install {package}`")
        dest = tree / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(host, dest)
        dest.chmod(host.stat().st_mode & 0o777)
    for rel, target in HOST_LINKS.items():
        (tree / rel).symlink_to(target)


def _move_lazy(tree: Path) -> list[str]:
    """Each LAZY_FILES file to the same path under LAZY, a relative link left in its place (the
    loader keeps a library's $ORIGIN and search path where the link is)."""
    moved: list[str] = []
    for pattern in LAZY_FILES:
        matches = [p for p in sorted(tree.glob(pattern)) if p.is_file() and not p.is_symlink()]
        if not matches:
            raise BuildError(f"no file in the tree matches {pattern} (initramfs.LAZY_FILES)")
        for p in matches:
            rel = p.relative_to(tree / USR)
            dest = tree / LAZY / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
            p.symlink_to(os.path.relpath(dest, p.parent))
            moved.append(str(rel))
    return moved


def _check_boot_needs_nothing_lazy(tree: Path) -> None:
    """No ELF of the /usr image may need a library of the lazy one: the boot would wait for it."""
    lazy_dir = tree / LAZY
    lazy = {p.name for p in elfdeps.elves(lazy_dir)}
    wrong = {str(p.relative_to(tree)): sorted(set(elfdeps.read(p).needed) & lazy)
             for p in elfdeps.elves(tree) if lazy_dir not in p.parents}
    wrong = {path: libs for path, libs in wrong.items() if libs}
    if wrong:
        raise BuildError(f"ELF files the boot may load need libraries of /{LAZY}: {wrong}"
                         " (initramfs.LAZY_FILES)")


def assemble(
    tree: Path = TREE,
    *,
    frozen_init: Path = freeze.ONEDIR,
    runtime_dir: Path = runtime.OUT,
    extra_ca_certs: str = "",
) -> None:
    """The initramfs tree: skeleton, frozen init, OCI runtime, CA bundle, host programs and the
    host libraries they need, checked loadable from the tree alone."""
    shutil.rmtree(tree, ignore_errors=True)
    _copy_skeleton(tree)
    _install_init(tree, frozen_init)
    _install_runtime(tree, runtime_dir)
    size = cacerts.install(tree, extra_ca_certs)
    print(f"  CA bundle: {size} bytes" + (f" (with {extra_ca_certs})" if extra_ca_certs else ""))
    _install_host_files(tree)
    added = elfdeps.add_host_libraries(tree, BUNDLE_LIBS)
    print(f"  host libraries added: {', '.join(sorted(added))}")
    linked = elfdeps.link_duplicates(tree, BUNDLE_LIBS)
    if linked:
        print(f"  bundle copies of system libraries made links: {', '.join(linked)}")
    moved = _move_lazy(tree)
    print(f"  moved to /{LAZY}: {', '.join(moved)}")
    elfdeps.check_loadable(tree, LIB_DIRS)
    _check_boot_needs_nothing_lazy(tree)
    outside = [p for p in tree.rglob("*") if elfdeps.is_elf(p) and not p.is_symlink()
               and p.relative_to(tree).parts[0] not in (USR, "init")]
    if outside:
        raise BuildError(f"ELF files outside /{USR} would stay in RAM: {outside}")


def _manifest(tree: Path) -> str:
    """One line per entry (mode, size, sha256, path): the build's record of what it shipped."""
    lines = []
    for p in sorted(tree.rglob("*")):
        rel = p.relative_to(tree)
        st = p.lstat()
        if stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            lines.append(f"{stat.filemode(st.st_mode)} {st.st_size:>10} {digest[:16]} /{rel}")
        elif stat.S_ISLNK(st.st_mode):
            lines.append(f"{stat.filemode(st.st_mode)} {'':>10} {'':16} /{rel} -> {os.readlink(p)}")
    return "\n".join(lines) + "\n"


def archive(tree: Path, out: Path, *, zstd_out: Path | None = None,
            usr_image: Path = USR_SQUASHFS, lazy_image: Path = LAZY_SQUASHFS) -> None:
    """newc cpio of the tree with its /usr as two squashfs images (`usr_image` without /usr/lazy,
    `lazy_image` of it, made here), gzip'ed with no name and a zero mtime in the gzip header;
    with `zstd_out`, also the same cpio compressed with zstd -19 (what the UKI carries)."""
    lazy_in_usr = str(Path(LAZY).relative_to(USR))
    usrimage.make(tree / USR, usr_image, mount_points=(lazy_in_usr,))
    usrimage.make(tree / LAZY, lazy_image, compression=usrimage.LAZY_COMPRESSION)
    raw = io.BytesIO()
    cpio.write(raw, tree, mtime=reproducible.epoch(), devices=DEVICES,
               files={USR_IMAGE: usr_image, LAZY_IMAGE: lazy_image}, prune=(USR,))
    tmp = out.with_suffix(".tmp")
    with tmp.open("wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9,
                                            mtime=0) as gz:
        gz.write(raw.getvalue())
    os.replace(tmp, out)
    if zstd_out is not None:
        # Measured on the 24 MB tree: 9.6 MB instead of gzip's 11.2 MB, and unpacked as fast
        # under TCG (xz: 8.9 MB but 2 s slower to boot). One thread keeps the output stable.
        ztmp = zstd_out.with_suffix(".tmp")
        run(["zstd", "-19", "-T1", "-q", "-f", "-o", ztmp], input=raw.getvalue(), quiet=True)
        os.replace(ztmp, zstd_out)


def build(extra_ca_certs: str = "") -> None:
    """target/initramfs.cpio.{gz,zst} and the tree they hold; EXTRA_CA_CERTS=path adds site CAs."""
    with step("Assembling the initramfs tree"):
        assemble(TREE, extra_ca_certs=extra_ca_certs)
    with step("Archiving target/initramfs.cpio.gz and .zst"):
        archive(TREE, CPIO_GZ, zstd_out=CPIO_ZST)
        MANIFEST.write_text(_manifest(TREE))


def build_rootfs_image() -> None:
    """target/rootfs.raw: ext4 holding the same tree, for hypervisors that boot a disk root."""
    out = ROOTFS_IMAGE
    staging = paths.TARGET / "rootfs.staging"
    with step("Building target/rootfs.raw (ext4)"):
        if not (TREE / "init").is_file():
            raise BuildError(f"{TREE} is missing: build the initramfs first (`doit initramfs`)")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(TREE, staging, symlinks=True)
        for dev in DEVICES:
            node = staging / dev.path
            node.unlink(missing_ok=True)
            os.mknod(node, dev.mode, os.makedev(dev.major, dev.minor))
        size_mib = sum(p.lstat().st_size for p in staging.rglob("*")) * 3 // 2 // 2**20 + 16
        out.unlink(missing_ok=True)
        # A fixed UUID and hash seed keep the image stable; -d copies the tree in.
        run(["mkfs.ext4", "-q", "-F", "-L", "mvirt-one",
             "-U", "6d766972-742d-6f6e-6500-000000000001",
             "-E", "hash_seed=6d766972-742d-6f6e-6500-000000000002,root_owner=0:0",
             "-d", staging, out, f"{size_mib}M"],
            env={"E2FSPROGS_FAKE_TIME": str(reproducible.epoch())})
        shutil.rmtree(staging)
