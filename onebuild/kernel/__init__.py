"""The guest kernel: its source (source), configuration (kconfig), build through the cache
(bzimage) and interactive edits folded back into kernel.config (menuconfig)."""
