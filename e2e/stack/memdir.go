package stack

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// memoryDir makes the stack's tmpfs folder under /dev/shm, mirroring the plugin sidecar's
// memory-backed emptyDir (manifests/cmp-sidecar). argocd-cmp-server extracts the whole
// repository into a new folder for every generation and deletes it after: on ext4 this
// machine's inode allocator spends ~90 ms per 300-file extraction skipping recently deleted
// inodes, on tmpfs ~10 ms. Without a tmpfs of at least 1 GiB free it falls back to dir, and
// says so: the plugin's figures are then a disk's.
func memoryDir(dir string, log io.Writer) string {
	var fs unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &fs); err != nil || fs.Type != unix.TMPFS_MAGIC || fs.Bavail*uint64(fs.Bsize) < 1<<30 {
		fmt.Fprintf(log, "e2e: no tmpfs with 1 GiB free at /dev/shm: the plugin sidecar's scratch space is on disk in %s\n", dir)
		return dir
	}
	d, err := os.MkdirTemp("/dev/shm", "kropipe-e2e-")
	if err != nil {
		fmt.Fprintf(log, "e2e: %v: the plugin sidecar's scratch space is on disk in %s\n", err, dir)
		return dir
	}
	return d
}
