/*
 * /init of the initramfs: mount the read-only /usr images, then become the Python init.
 *
 * The Python runtime (interpreter, libraries, the frozen init, crun) travels as a compressed
 * squashfs image inside the initramfs. Mounted through a loop device, only the pages that are
 * used get decompressed, into page cache the kernel can drop, instead of the whole tree being
 * unpacked into ramfs and held for the VM's life. Python cannot start before /usr is there, so
 * this small static program does the mount and then execve()s the Python init: the same process,
 * so PID 1 stays the Python init. It is not a second init: it forks nothing and reaps nothing.
 *
 * The images are mounted in order: /usr, then the one holding what the boot does not read, on a
 * directory of the first. An image that is absent is skipped (a root filesystem that has /usr
 * unpacked, like rootfs.raw, has none). If one cannot be mounted there is nothing to run: it says
 * why on the console and powers the machine off, because PID 1 exiting would panic the kernel.
 *
 * IMAGES ({image, mount point} pairs) and INIT are given at compile time (-D...) by
 * onebuild/preinit.py, where the initramfs layout is declared.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef IMAGES
#error "IMAGES ({squashfs image, mount point} pairs, in mount order) must be defined"
#endif
#ifndef INIT
#error "INIT (the program to exec) must be defined"
#endif

/* The loop device ABI of <linux/loop.h> (stable since Linux 5.8). musl ships no kernel headers,
 * and mixing the host's glibc-side ones with musl's is worse than declaring these few here. */
#define LOOP_CONFIGURE 0x4C0A
#define LOOP_CTL_GET_FREE 0x4C82
#define LO_FLAGS_READ_ONLY 1
#define LO_FLAGS_AUTOCLEAR 4
#define LO_NAME_SIZE 64
#define LO_KEY_SIZE 32
#define LOOP_MAJOR 7
#define LOOP_CTL_MAJOR 10
#define LOOP_CTL_MINOR 237

struct loop_info64 {
    uint64_t lo_device, lo_inode, lo_rdevice, lo_offset, lo_sizelimit;
    uint32_t lo_number, lo_encrypt_type, lo_encrypt_key_size, lo_flags;
    uint8_t lo_file_name[LO_NAME_SIZE];
    uint8_t lo_crypt_name[LO_NAME_SIZE];
    uint8_t lo_encrypt_key[LO_KEY_SIZE];
    uint64_t lo_init[2];
};

struct loop_config {
    uint32_t fd;
    uint32_t block_size;
    struct loop_info64 info;
    uint64_t reserved[8];
};

/* The device nodes live in the initramfs' /dev only while this runs: devtmpfs is mounted over
 * /dev later, and the mount keeps the loop device itself. */
#define LOOP_CONTROL "/dev/loop-control"

struct image {
    const char *path, *mount_point;
};

static const struct image images[] = {IMAGES};

/* "preinit: WHAT[ ARG]: strerror(err)" on stderr (the console). */
static void say_about(const char *what, const char *arg, int err) {
    char line[256];
    int n = snprintf(line, sizeof line, "preinit: %s%s%s: %s\n", what, arg ? " " : "",
                     arg ? arg : "", strerror(err));
    if (n > 0)
        (void)!write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void say(const char *what, int err) { say_about(what, NULL, err); }

static void give_up(void) {
    if (getpid() != 1)
        _exit(1); /* only PID 1 may take the machine down (and a test must never) */
    sync();
    reboot(RB_POWER_OFF);
    for (;;)
        pause();
}

static int node(const char *path, mode_t type, unsigned major, unsigned minor) {
    if (mknod(path, type | 0600, makedev(major, minor)) == 0 || errno == EEXIST)
        return 0;
    return -1;
}

/* Attach the open image `fd` to a free loop device, read-only, and mount it on its mount point. */
static int mount_image(int fd, const struct image *image) {
    char dev[32];
    int control, loop, n, saved;

    if (node(LOOP_CONTROL, S_IFCHR, LOOP_CTL_MAJOR, LOOP_CTL_MINOR) < 0) {
        say("mknod " LOOP_CONTROL, errno);
        return -1;
    }
    control = open(LOOP_CONTROL, O_RDWR | O_CLOEXEC);
    saved = errno;
    unlink(LOOP_CONTROL);
    if (control < 0) {
        say("open " LOOP_CONTROL, saved);
        return -1;
    }
    n = ioctl(control, LOOP_CTL_GET_FREE);
    saved = errno;
    close(control);
    if (n < 0) {
        say("LOOP_CTL_GET_FREE", saved);
        return -1;
    }
    snprintf(dev, sizeof dev, "/dev/loop%d", n);
    if (node(dev, S_IFBLK, LOOP_MAJOR, (unsigned)n) < 0) {
        say("mknod loop device", errno);
        return -1;
    }
    loop = open(dev, O_RDONLY | O_CLOEXEC);
    if (loop < 0) {
        saved = errno;
        unlink(dev);
        say("open loop device", saved);
        return -1;
    }
    struct loop_config config;
    memset(&config, 0, sizeof config);
    config.fd = (uint32_t)fd;
    /* AUTOCLEAR: the device detaches itself once the filesystem on it is unmounted. */
    config.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    strncpy((char *)config.info.lo_file_name, image->path, LO_NAME_SIZE - 1);
    if (ioctl(loop, LOOP_CONFIGURE, &config) < 0) {
        saved = errno;
        close(loop);
        unlink(dev);
        say_about("LOOP_CONFIGURE", image->path, saved);
        return -1;
    }
    int rc = mount(dev, image->mount_point, "squashfs", MS_RDONLY | MS_NODEV, NULL);
    saved = errno;
    close(loop); /* the mount holds the device from here on (or AUTOCLEAR frees it) */
    unlink(dev);
    if (rc < 0) {
        char what[128];
        snprintf(what, sizeof what, "mount %s on %s", image->path, image->mount_point);
        say(what, saved);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv, char **envp) {
    (void)argc;
    for (size_t i = 0; i < sizeof images / sizeof images[0]; i++) {
        int fd = open(images[i].path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            int rc = mount_image(fd, &images[i]);
            close(fd);
            if (rc < 0)
                give_up();
        } else if (errno != ENOENT) {
            say_about("open", images[i].path, errno);
            give_up();
        }
    }
    argv[0] = INIT;
    execve(INIT, argv, envp);
    say("exec " INIT, errno);
    give_up();
    return 1;
}
