# mvirt-one make targets. Every target delegates to doit (dodo.py holds the graph), so make and
# doit never disagree; `bootstrap` first installs what is missing (apt packages, the pinned venv).
VENV      ?= .venv
DOIT      := $(VENV)/bin/doit
PYTEST    := $(VENV)/bin/pytest
BOOTSTRAP := scripts/bootstrap.sh
# Variables reach doit through the environment (a make command-line variable is exported too):
#   KERNEL_TARBALL=path/to/linux-X.Y.Z.tar.xz  an explicit kernel source tarball
#   RUNTIME=path/to/binary                     ship this OCI runtime instead of the built crun
#   EXTRA_CA_CERTS=path/to/ca.pem              add these PEM CA certificates to the guest's bundle
DOIT_ARGS :=

.PHONY: help bootstrap one kernel initramfs init runtime rootfs uki menuconfig run clean distclean test check

help: ## show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([^:]*)[^#]*## (.*)/  \1\t\2/' | expand -t 14

bootstrap: ## install missing Debian packages and the pinned Python venv
	@$(BOOTSTRAP)

one: bootstrap ## build target/mvirt-one.efi (the UKI) and its parts
	$(DOIT) $(DOIT_ARGS) one

kernel: bootstrap ## build target/bzImage from kernel.version + kernel.config
	$(DOIT) $(DOIT_ARGS) kernel

initramfs: bootstrap ## build target/initramfs.cpio.gz (skeleton + frozen init + runtime)
	$(DOIT) $(DOIT_ARGS) initramfs

init: bootstrap ## freeze the Python init (PyInstaller) into target/init/
	$(DOIT) $(DOIT_ARGS) init

runtime: bootstrap ## build the static OCI runtime (crun) shipped in the initramfs
	$(DOIT) $(DOIT_ARGS) runtime

rootfs: bootstrap ## build target/rootfs.raw, an ext4 image of the initramfs tree
	$(DOIT) $(DOIT_ARGS) rootfs

uki: bootstrap ## assemble target/mvirt-one.efi from its parts
	$(DOIT) $(DOIT_ARGS) uki

menuconfig: bootstrap ## edit the kernel config; changes are folded back into kernel.config
	$(DOIT) $(DOIT_ARGS) menuconfig

run: bootstrap ## boot the freshly built UKI in qemu (doit reserves `run`: the task is run_vm)
	$(DOIT) $(DOIT_ARGS) run_vm

clean: bootstrap ## remove build outputs (keeps the kernel source)
	$(DOIT) $(DOIT_ARGS) clean_build

distclean: bootstrap ## clean + remove the kernel source tree and downloaded tarballs
	$(DOIT) $(DOIT_ARGS) distclean

test: bootstrap ## build, then run the whole test suite
	$(DOIT) $(DOIT_ARGS) one
	$(PYTEST) $(PYTEST_ARGS)
