package pool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dirvol/dirvol/internal/btrfs"

	"golang.org/x/sys/unix"
)

// Btrfs is the backend for a btrfs filesystem. It keeps the dir backend's
// layout (volumes/, snapshots/, archive/, .trash/), but each volume is a
// subvolume whose quota group limits the bytes it references, so a write
// past the volume's size fails with EDQUOT; snapshots are read-only btrfs
// snapshots, and restores and clones writable ones, made in milliseconds
// whatever the volume holds.
//
// A volume that is a plain directory (made when this pool was a dir pool,
// before it was found to be on btrfs) keeps working as on a dir pool:
// Remove, Usage, Retain and Archive treat it as Dir does, but nothing limits
// its size, and Snapshot and clones of it are ErrUnsupported.
//
// Subvolumes a workload makes inside its volume are outside the volume's
// quota group, neither counted nor limited (btrfs accounts each subvolume
// on its own); Remove deletes them with the volume.
//
// Quota groups are a known cost on btrfs filesystems holding many
// snapshots (snapper roots), and enabling them is a choice for the whole
// filesystem: a pool enables them only on a filesystem dirvol owns (image
// pools) or when the administrator asks for backend=btrfs. A btrfs pool
// found by detection on a filesystem with quotas off makes subvolumes
// without limits and says so (EnforcesSize is false).
//
// Limits hold only while the kernel's quota figures are consistent; Check
// watches the quota status, repairs it with a rescan, and turns
// EnforcesSize false meanwhile, so sizes are never reported as enforced
// while they are not.
type Btrfs struct {
	// dir serves everything that is the same as on a dir pool, and
	// plain-directory volumes.
	dir *Dir
	// limits says that the pool's filesystem has quotas on and volumes
	// get limits; false for a detected btrfs with quotas off.
	limits bool

	// mu guards unfreed: quota groups of deleted subvolumes that btrfs
	// has not finished dropping (it frees a subvolume's blocks in the
	// background, and its group must outlive that). Later removals, Check
	// and PurgeTrash retry them.
	mu      sync.Mutex
	unfreed map[uint64]bool

	// qmu guards quota, what the last quota status check found.
	qmu   sync.Mutex
	quota quotaState

	// image is set on an image pool: the filesystem it mounted.
	image *imageMount
}

var _ Pool = (*Btrfs)(nil)

// NewBtrfs prepares a btrfs pool rooted at root, creating its layout when
// missing and enabling quota groups on the filesystem: for image pools,
// whose filesystem dirvol owns, and for backend=btrfs, where the
// administrator asked for it. root must be on btrfs; anything else is
// ErrWrongFilesystem, naming what it is. It starts nothing.
func NewBtrfs(name, root string, opts ...DirOption) (*Btrfs, error) {
	return newBtrfs(name, root, true, opts...)
}

// newDetectedBtrfs prepares a btrfs pool on a filesystem found to be btrfs
// without being asked for: it uses quotas where they are on, and never
// turns them on, since that would change the whole filesystem (the host's,
// often) behind the administrator's back. Without quotas, volumes are
// subvolumes without limits.
func newDetectedBtrfs(name, root string, opts ...DirOption) (*Btrfs, error) {
	return newBtrfs(name, root, false, opts...)
}

// startRescanWait bounds how long opening a pool waits for a quota rescan;
// Check follows a longer one.
const startRescanWait = 10 * time.Second

func newBtrfs(name, root string, enable bool, opts ...DirOption) (*Btrfs, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("pool name: %w", err)
	}
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("pool %q: path %q is not absolute", name, root)
	}
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("pool %q: %w", name, err)
	}
	magic, err := fsMagic(root)
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", name, err)
	}
	if magic != unix.BTRFS_SUPER_MAGIC {
		return nil, fmt.Errorf("pool %q: backend btrfs needs a btrfs filesystem, but %s is on %s; drop backend=btrfs to use it as a dir pool: %w",
			name, root, fsName(magic), ErrWrongFilesystem)
	}
	d, err := NewDir(name, root, opts...)
	if err != nil {
		return nil, err
	}
	b := &Btrfs{dir: d, unfreed: make(map[uint64]bool)}
	err = b.withRoot(func(fd int) error {
		on, err := btrfs.QuotaEnabled(fd)
		if err != nil || on {
			b.limits = on
			return err
		}
		if !enable {
			d.log.Info("btrfs quotas are off on this filesystem and dirvol does not turn them on for a filesystem it was not given: volumes are subvolumes without limits, sizes are not enforced. To enforce sizes, give the pool backend=btrfs (enables quotas on the whole filesystem) or its own image= file",
				"path", root, "sizesEnforced", false)
			return nil
		}
		if err := btrfs.EnableQuota(fd); err != nil {
			return err
		}
		b.limits = true
		d.log.Info("Enabled btrfs quota groups on the pool's filesystem; usage figures are low until btrfs has rescanned what it already holds", "path", root)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", name, err)
	}
	if b.limits {
		// Enabling quotas starts a rescan, and a filesystem may come with
		// an inconsistent status: log and repair it now, and give a
		// short rescan the time to end, so the start line's sizesEnforced
		// is true only when it holds.
		if err := b.waitRescan(startRescanWait); err != nil && !errors.Is(err, ErrSizesNotEnforced) {
			return nil, fmt.Errorf("pool %q: %w", name, err)
		}
	}
	return b, nil
}

// Name implements Pool.
func (b *Btrfs) Name() string { return b.dir.Name() }

// Root implements Pool.
func (b *Btrfs) Root() string { return b.dir.Root() }

// Backend implements Pool.
func (b *Btrfs) Backend() string { return BackendBtrfs }

// EnforcesSize implements Pool: quota group limits enforce sizes while the
// kernel's quota figures are consistent, as of the last Check.
func (b *Btrfs) EnforcesSize() bool { return b.limits && b.SizeProblem() == nil }

// Path implements Pool.
func (b *Btrfs) Path(id string) (string, error) { return b.dir.Path(id) }

// Exists implements Pool. On an image pool whose image is not mounted it is
// ErrNotMounted, not false: the volume is out of reach, not gone.
func (b *Btrfs) Exists(id string) (bool, error) {
	if err := b.checkMounted(); err != nil {
		return false, err
	}
	return b.dir.Exists(id)
}

// Archive implements Pool as Dir does: a subvolume is renamed like a
// directory, and keeps its limit in the archive.
func (b *Btrfs) Archive(id, dest string) error { return b.dir.Archive(id, dest) }

// ArchiveTaken implements Pool.
func (b *Btrfs) ArchiveTaken(dest string) (bool, error) { return b.dir.ArchiveTaken(dest) }

// Stat implements Pool with statfs, as Dir does. btrfs reports no inode
// counts (TotalInodes and FreeInodes are 0) and estimates free space. An
// image pool whose image is not mounted has no space at all: the
// filesystem under its mount point is not the pool's (Writable says why).
func (b *Btrfs) Stat() (FS, error) {
	if errors.Is(b.checkMounted(), ErrNotMounted) {
		return FS{}, nil
	}
	return b.dir.Stat()
}

// Writable implements Pool; an image pool whose image is not mounted is
// ErrNotMounted.
func (b *Btrfs) Writable() error {
	if err := b.checkMounted(); err != nil {
		return err
	}
	return b.dir.Writable()
}

// Scan implements Pool.
func (b *Btrfs) Scan() ([]string, []string, error) { return b.dir.Scan() }

// Retain implements Pool as Dir does. A volume filled to its limit has no
// room for the note; its limit is then lifted, since a retained volume is no
// longer the driver's to size (it leaves the catalog and no pod mounts it).
func (b *Btrfs) Retain(id string, note RetainNote) error {
	err := b.dir.Retain(id, note)
	if !errors.Is(err, unix.EDQUOT) {
		return err
	}
	p, perr := b.Path(id)
	if perr != nil {
		return perr
	}
	lifted := false
	lerr := withVolume(p, ErrNotFound, func(fd int, subvol bool) error {
		if !subvol {
			return nil
		}
		subvolID, err := btrfs.SubvolumeID(fd)
		if err != nil {
			return err
		}
		lifted = true
		return btrfs.ClearLimit(fd, subvolID)
	})
	if lerr != nil {
		return fmt.Errorf("%w (lifting the volume's limit to make room: %w)", err, lerr)
	}
	if !lifted {
		return err
	}
	return b.dir.Retain(id, note)
}

// Create implements Pool.
//
// A filesystem volume is a subvolume limited to spec.Bytes, with spec.Perm
// on its root directory. A block volume is a subvolume holding BlockFile,
// as on a dir pool (directory 0700, file 0600, spec.Perm does not apply),
// with no quota limit: the file's length bounds what the loop device
// exposes, and a limit would turn into I/O errors inside the pod's
// filesystem, since after a snapshot a partly rewritten extent stays
// referenced whole, so a block volume can reference more than its file's
// length. New files in it are NOCOW, as btrfs advises for disk images: a
// filesystem's small random writes would otherwise fragment the file
// without end; btrfs still copies a block shared with a snapshot once.
//
// A restore or clone is a writable snapshot of its source, made in one
// step, then limited (or, for a block volume, its file grown) to
// spec.Bytes; like on a dir pool it keeps the source's root mode and owner.
func (b *Btrfs) Create(id string, spec VolumeSpec) error {
	p, err := b.Path(id)
	if err != nil {
		return err
	}
	if spec.FromSnapshot != "" || spec.FromVolume != "" {
		return b.createFrom(id, p, spec)
	}
	if spec.Bytes <= 0 {
		return fmt.Errorf("volume %s: a btrfs pool needs a size to enforce, not %d bytes", id, spec.Bytes)
	}
	err = withDirFD(b.dir.volumes, func(vfd int) error {
		return btrfs.CreateSubvolume(vfd, id)
	})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create subvolume %s: %w", p, err)
	}
	// An existing volume is the work of an interrupted attempt: finish it.
	err = withVolume(p, ErrNotFound, func(fd int, subvol bool) error {
		if !subvol {
			return errPlainDir
		}
		return b.finish(fd, p, spec, true)
	})
	if errors.Is(err, errPlainDir) {
		// Made as a plain directory before the pool was a btrfs pool.
		return b.dir.Create(id, spec)
	}
	if err != nil {
		return err
	}
	return b.commit()
}

// errPlainDir says that a volume is a plain directory, not a subvolume.
var errPlainDir = errors.New("a plain directory, not a btrfs subvolume")

// finish sizes the new subvolume open as fd: the limit of a filesystem
// volume, the block file of a block volume. fresh says the subvolume is
// empty rather than a copy, so the root gets spec.Perm (filesystem volume)
// or becomes a block volume.
func (b *Btrfs) finish(fd int, p string, spec VolumeSpec, fresh bool) error {
	block := spec.Block
	if !fresh {
		var err error
		if block, err = isBlockVolume(fd); err != nil {
			return err
		}
	}
	if block {
		if fresh {
			if err := unix.Fsetxattr(fd, blockMarker, []byte("1"), 0); err != nil {
				return fmt.Errorf("mark %s as a block volume: %w", p, err)
			}
			setNoCOW(fd)
		}
		return growBlockFile(p, spec.Bytes, fresh)
	}
	if b.limits {
		subvol, err := btrfs.SubvolumeID(fd)
		if err != nil {
			return err
		}
		if err := btrfs.SetLimit(fd, subvol, uint64(spec.Bytes)); err != nil {
			return err
		}
	}
	if !fresh {
		return nil
	}
	// As on a dir pool, the permission bits and setuid, setgid and sticky.
	if err := unix.Fchmod(fd, spec.Perm.Mode&0o7777); err != nil {
		return fmt.Errorf("set mode of volume directory: %w", err)
	}
	if spec.Perm.UID >= 0 || spec.Perm.GID >= 0 {
		if err := unix.Fchown(fd, spec.Perm.UID, spec.Perm.GID); err != nil {
			return fmt.Errorf("set owner of volume directory: %w", err)
		}
	}
	return nil
}

// Expand implements Pool: it raises a filesystem volume's quota limit (or
// sets it again where an administrator cleared it) and grows a block
// volume's file; it never lowers or shrinks either. A plain-directory volume
// is expanded as on a dir pool.
func (b *Btrfs) Expand(id string, bytes int64) error {
	p, err := b.Path(id)
	if err != nil {
		return err
	}
	err = withVolume(p, ErrNotFound, func(fd int, subvol bool) error {
		if !subvol {
			return errPlainDir
		}
		block, err := isBlockVolume(fd)
		if err != nil {
			return err
		}
		if block {
			return growBlockFile(p, bytes, false)
		}
		if !b.limits {
			return nil
		}
		subvolID, err := btrfs.SubvolumeID(fd)
		if err != nil {
			return err
		}
		limit, ok, err := btrfs.Limit(fd, subvolID)
		if err != nil {
			return err
		}
		if ok && limit >= uint64(bytes) {
			return nil
		}
		return btrfs.SetLimit(fd, subvolID, uint64(bytes))
	})
	if errors.Is(err, errPlainDir) {
		return b.dir.Expand(id, bytes)
	}
	if err != nil {
		return fmt.Errorf("expand volume %s: %w", id, err)
	}
	return b.commit()
}

// BlockPath implements Pool as Dir does.
func (b *Btrfs) BlockPath(id string) (string, error) { return b.dir.BlockPath(id) }

// Usage implements Pool from the volume's quota group, without reading the
// tree: Bytes is what the subvolume references (the figure its limit
// applies to, data shared with snapshots and clones included) as of btrfs's
// last transaction commit, at most 30 seconds old by default. Inodes is 0:
// btrfs keeps no per-subvolume count of files, and counting them would cost
// the walk this avoids. Data in subvolumes a workload made inside its
// volume is not counted (nor limited): btrfs accounts each subvolume on its
// own. A plain-directory volume, or a filesystem whose quotas an
// administrator turned off, is measured by walking it, as on a dir pool.
func (b *Btrfs) Usage(id string) (Usage, error) {
	p, err := b.Path(id)
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	err = withVolume(p, ErrNotFound, func(fd int, subvol bool) error {
		if !subvol {
			return errPlainDir
		}
		subvolID, err := btrfs.SubvolumeID(fd)
		if err != nil {
			return err
		}
		q, err := btrfs.QgroupUsage(fd, subvolID)
		if errors.Is(err, unix.ENOENT) {
			return errPlainDir
		}
		if err != nil {
			return err
		}
		u.Bytes = int64(q.Referenced)
		return nil
	})
	if errors.Is(err, errPlainDir) {
		return b.dir.Usage(id)
	}
	if err != nil {
		return Usage{}, fmt.Errorf("usage of volume %s: %w", id, err)
	}
	return u, nil
}

// commit makes what the pool just changed durable: btrfs keeps new and
// deleted subvolumes and quota limits in memory until its next transaction
// commit, and the volume core records an operation as done once the pool
// returns.
func (b *Btrfs) commit() error { return b.withRoot(btrfs.Commit) }

func (b *Btrfs) withRoot(fn func(fd int) error) error { return withDirFD(b.Root(), fn) }

// withDirFD calls fn with directory p open without following a link at its
// last element.
func withDirFD(p string, fn func(fd int) error) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(fd)
	return fn(fd)
}

// withVolume calls fn with directory p open (not following a link there)
// and whether it is a subvolume; a missing p is missing, wrapped. The
// descriptor is closed when fn returns: btrfs cannot free a deleted
// subvolume while a descriptor in it is open.
func withVolume(p string, missing error, fn func(fd int, subvol bool) error) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%s: %w", p, missing)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(fd)
	subvol, err := btrfs.IsSubvolume(fd)
	if err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	return fn(fd, subvol)
}
