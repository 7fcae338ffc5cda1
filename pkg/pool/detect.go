package pool

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"
)

// Backends a pool can have.
const (
	// BackendDir keeps volumes as plain directories on any filesystem;
	// sizes are reserved, not enforced.
	BackendDir = "dir"
	// BackendBtrfs keeps volumes as btrfs subvolumes with quota group
	// limits; sizes are enforced and snapshots are btrfs snapshots.
	BackendBtrfs = "btrfs"
)

// ErrWrongFilesystem means a pool's filesystem cannot serve the backend
// asked for, or an image holds something dirvol will not format.
var ErrWrongFilesystem = errors.New("filesystem does not fit the pool")

// Deps are what Open needs besides the spec. Only image pools use them.
type Deps struct {
	// Mounter loop-mounts image pools.
	Mounter mount.Interface
	// Exec runs mkfs.btrfs, and blkid to name what an image holds.
	Exec utilexec.Interface
	// Loops finds the loop device of a mounted image and tells it that
	// its file grew.
	Loops LoopDevices
}

// Open prepares the pool spec describes, choosing its backend: an image
// pool is btrfs on its own image, which is created, formatted and mounted
// when needed (see openImage); otherwise spec.Backend, or, when empty, btrfs
// where Path is on btrfs and dir elsewhere. A detected btrfs pool enables
// no quotas: with quotas off on that filesystem its volumes have no limits
// (EnforcesSize is false) until the administrator asks for backend=btrfs. The log line for the pool is
// the caller's; Open logs only what it did to an image. It starts nothing.
func Open(ctx context.Context, spec Spec, deps Deps) (Pool, error) {
	logger := klog.FromContext(ctx).WithValues("pool", spec.Name)
	if spec.Image != "" {
		return openImage(ctx, spec, deps)
	}
	if err := os.MkdirAll(spec.Path, 0o711); err != nil {
		return nil, fmt.Errorf("pool %q: %w", spec.Name, err)
	}
	backend := spec.Backend
	if backend == "" {
		magic, err := fsMagic(spec.Path)
		if err != nil {
			return nil, fmt.Errorf("pool %q: %w", spec.Name, err)
		}
		if magic == unix.BTRFS_SUPER_MAGIC {
			// Never turns quotas on: see newDetectedBtrfs.
			return newDetectedBtrfs(spec.Name, spec.Path, WithLogger(logger))
		}
		backend = BackendDir
	}
	switch backend {
	case BackendBtrfs:
		return NewBtrfs(spec.Name, spec.Path, WithLogger(logger))
	case BackendDir:
		return NewDir(spec.Name, spec.Path, WithLogger(logger))
	}
	return nil, fmt.Errorf("pool %q: unknown backend %q", spec.Name, backend)
}

func fsMagic(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return int64(st.Type), nil //nolint:unconvert // Type is int32 on some platforms
}

// fsNames names the filesystems a pool is likely to be found on, for
// messages.
var fsNames = map[int64]string{
	unix.BTRFS_SUPER_MAGIC:     "btrfs",
	unix.EXT4_SUPER_MAGIC:      "ext2/3/4",
	unix.XFS_SUPER_MAGIC:       "xfs",
	unix.TMPFS_MAGIC:           "tmpfs",
	unix.OVERLAYFS_SUPER_MAGIC: "overlayfs",
	unix.RAMFS_MAGIC:           "ramfs",
	unix.NFS_SUPER_MAGIC:       "nfs",
	unix.FUSE_SUPER_MAGIC:      "fuse",
	unix.F2FS_SUPER_MAGIC:      "f2fs",
	unix.SQUASHFS_MAGIC:        "squashfs",
	0x2fc12fc1:                 "zfs",
	0xca451a4e:                 "bcachefs",
}

func fsName(magic int64) string {
	if n, ok := fsNames[magic]; ok {
		return n
	}
	return fmt.Sprintf("a filesystem with magic %#x", magic)
}
