package pool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

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
// snapshots; the pool enables them on the whole filesystem when it opens.
type Btrfs struct {
	// dir serves everything that is the same as on a dir pool, and
	// plain-directory volumes.
	dir *Dir

	// mu guards unfreed: quota groups of deleted subvolumes that btrfs
	// did not let go yet (it frees a subvolume's blocks in the background
	// and refuses to drop its group until then). Later removals and
	// PurgeTrash retry them.
	mu      sync.Mutex
	unfreed map[uint64]bool
}

var _ Pool = (*Btrfs)(nil)

// NewBtrfs prepares a btrfs pool rooted at root, creating its layout when
// missing and enabling quota groups on the filesystem. root must be on
// btrfs; anything else is ErrWrongFilesystem, naming what it is. It starts
// nothing.
func NewBtrfs(name, root string, opts ...DirOption) (*Btrfs, error) {
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
			return err
		}
		if err := btrfs.EnableQuota(fd); err != nil {
			return err
		}
		d.log.Info("Enabled btrfs quota groups on the pool's filesystem; usage figures are low until btrfs has rescanned what it already holds", "path", root)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", name, err)
	}
	return b, nil
}

// Name implements Pool.
func (b *Btrfs) Name() string { return b.dir.Name() }

// Root implements Pool.
func (b *Btrfs) Root() string { return b.dir.Root() }

// Backend implements Pool.
func (b *Btrfs) Backend() string { return BackendBtrfs }

// EnforcesSize implements Pool: quota group limits enforce sizes.
func (b *Btrfs) EnforcesSize() bool { return true }

// Path implements Pool.
func (b *Btrfs) Path(id string) (string, error) { return b.dir.Path(id) }

// Exists implements Pool.
func (b *Btrfs) Exists(id string) (bool, error) { return b.dir.Exists(id) }

// Archive implements Pool as Dir does: a subvolume is renamed like a
// directory, and keeps its limit in the archive.
func (b *Btrfs) Archive(id, dest string) error { return b.dir.Archive(id, dest) }

// ArchiveTaken implements Pool.
func (b *Btrfs) ArchiveTaken(dest string) (bool, error) { return b.dir.ArchiveTaken(dest) }

// Stat implements Pool with statfs, as Dir does. btrfs reports no inode
// counts (TotalInodes and FreeInodes are 0) and estimates free space.
func (b *Btrfs) Stat() (FS, error) { return b.dir.Stat() }

// Writable implements Pool.
func (b *Btrfs) Writable() error { return b.dir.Writable() }

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
	subvol, err := btrfs.SubvolumeID(fd)
	if err != nil {
		return err
	}
	if err := btrfs.SetLimit(fd, subvol, uint64(spec.Bytes)); err != nil {
		return err
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
