package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Layout of a pool's root directory:
//
//	volumes/<id>/             a volume's data (a block volume: one file, BlockFile)
//	snapshots/<id>/           a snapshot: a copy of a volume's directory
//	archive/<name>/           archived volumes
//	.trash/<id>/              volumes and snapshots being removed
//	.staging/volumes/<id>/    restores and clones being copied
//	.staging/snapshots/<id>/  snapshots being copied
//
// A copy is made under .staging and renamed into place when complete, so an
// entry under volumes/ or snapshots/ is never a partial copy. Whatever a
// crash leaves under .staging or .trash is removed by PurgeTrash.
const (
	volumesDir   = "volumes"
	snapshotsDir = "snapshots"
	archiveDir   = "archive"
	trashDir     = ".trash"
	stagingDir   = ".staging"
)

// Dir is the backend for any filesystem: a volume is a plain directory.
// Sizes are reserved by the volume core but not enforced: a writer can fill
// the filesystem. Snapshots, restores and clones copy the volume's tree,
// sharing file data through reflinks where the filesystem can (XFS with
// reflink, btrfs) and copying it otherwise; see internal/copytree.
type Dir struct {
	name      string
	root      string
	volumes   string
	snapshots string
	archive   string
	trash     string
	// stageVolumes and stageSnapshots hold copies in progress.
	stageVolumes   string
	stageSnapshots string
	log            klog.Logger

	// mu guards staging: the staging directories of copies running in this
	// process, which PurgeTrash must leave alone.
	mu      sync.Mutex
	staging map[string]bool
}

var _ Pool = (*Dir)(nil)

// DirOption configures a Dir.
type DirOption func(*Dir)

// WithLogger sets the logger that reports what copies did (files, bytes,
// reflinked or copied) and warns about what they could not keep. The
// default is klog's global logger.
func WithLogger(l klog.Logger) DirOption { return func(d *Dir) { d.log = l } }

// NewDir prepares a dir pool rooted at root, creating its layout when
// missing. It starts nothing.
func NewDir(name, root string, opts ...DirOption) (*Dir, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("pool name: %w", err)
	}
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("pool %q: path %q is not absolute", name, root)
	}
	root = filepath.Clean(root)
	d := &Dir{
		name:           name,
		root:           root,
		volumes:        filepath.Join(root, volumesDir),
		snapshots:      filepath.Join(root, snapshotsDir),
		archive:        filepath.Join(root, archiveDir),
		trash:          filepath.Join(root, trashDir),
		stageVolumes:   filepath.Join(root, stagingDir, volumesDir),
		stageSnapshots: filepath.Join(root, stagingDir, snapshotsDir),
		log:            klog.Background(),
		staging:        make(map[string]bool),
	}
	for _, o := range opts {
		o(d)
	}
	d.log = d.log.WithValues("pool", name)
	for _, p := range []string{d.volumes, d.archive, d.trash} {
		if err := os.MkdirAll(p, 0o711); err != nil {
			return nil, fmt.Errorf("pool %q: %w", name, err)
		}
	}
	// Nobody but the driver needs to reach snapshots or copies in
	// progress.
	for _, p := range []string{d.snapshots, d.stageVolumes, d.stageSnapshots} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, fmt.Errorf("pool %q: %w", name, err)
		}
	}
	return d, nil
}

// Name implements Pool.
func (d *Dir) Name() string { return d.name }

// Backend implements Pool.
func (d *Dir) Backend() string { return "dir" }

// EnforcesSize implements Pool: plain directories have no size limit.
func (d *Dir) EnforcesSize() bool { return false }

// Root returns the pool's root directory.
func (d *Dir) Root() string { return d.root }

// Check implements Pool: a dir pool promises no sizes, so there is
// nothing to check.
func (d *Dir) Check(context.Context) error { return nil }

// SizeProblem implements Pool: a dir pool never promised to enforce sizes.
func (d *Dir) SizeProblem() error { return nil }

// Path implements Pool.
func (d *Dir) Path(id string) (string, error) { return within(d.volumes, id) }

// Create implements Pool.
//
// An empty directory volume gets spec.Perm on its root directory. A block
// volume is a directory of mode 0700 holding BlockFile, a sparse file of
// spec.Bytes bytes and mode 0600; spec.Perm does not apply to it. A restore
// or clone is a copy of its source made as Snapshot makes one (staged, then
// renamed into place, so volumes/<id> is never a partial copy) and keeps the
// source's root mode and owner, as it keeps everything else in the tree:
// spec.Perm does not apply either. A block volume restored or cloned
// larger than its source has its file grown to spec.Bytes. The caller
// checks that the source's kind (block or filesystem) matches spec.Block.
func (d *Dir) Create(id string, spec VolumeSpec) error {
	p, err := d.Path(id)
	if err != nil {
		return err
	}
	switch {
	case spec.FromSnapshot != "" && spec.FromVolume != "":
		return fmt.Errorf("volume %s: a volume is made from a snapshot or from a volume, not both", id)
	case spec.FromSnapshot != "" || spec.FromVolume != "":
		return d.createFrom(id, spec)
	case spec.Block:
		return d.createBlock(id, spec.Bytes)
	}
	perm := spec.Perm
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create volume directory: %w", err)
	}
	// Mkdir is subject to the umask; Chmod sets exactly the requested mode,
	// setuid, setgid and sticky bits included (a shared directory is often
	// 2770 or 1777). Chown after it keeps them: the kernel clears setuid and
	// setgid on chown of files, not of directories.
	if err := unix.Chmod(p, perm.Mode&0o7777); err != nil {
		return fmt.Errorf("set mode of volume directory: %w", err)
	}
	if perm.UID >= 0 || perm.GID >= 0 {
		if err := os.Lchown(p, perm.UID, perm.GID); err != nil {
			return fmt.Errorf("set owner of volume directory: %w", err)
		}
	}
	return syncDir(d.volumes)
}

// Exists implements Pool.
func (d *Dir) Exists(id string) (bool, error) {
	p, err := d.Path(id)
	if err != nil {
		return false, err
	}
	return isDir(p)
}

// isDir reports whether p is a directory, without following a link; a
// missing p is false, anything else at p an error.
func isDir(p string) (bool, error) {
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.IsDir():
		return false, fmt.Errorf("%s is not a directory", p)
	}
	return true, nil
}

// Remove implements Pool. The directory is first renamed into the pool's
// trash, so a crash never leaves a half-deleted volume under volumes/, and
// then removed with os.RemoveAll, which opens every directory relative to its
// parent with O_NOFOLLOW: a symbolic link planted inside the volume is
// unlinked, never followed.
func (d *Dir) Remove(id string) error { return d.discard(d.volumes, id) }

// discard removes parent/id as Remove describes. Volumes and snapshots share
// the trash: the driver's volume and snapshot IDs differ in their prefix.
func (d *Dir) discard(parent, id string) error {
	src, err := within(parent, id)
	if err != nil {
		return err
	}
	dst, err := within(d.trash, id)
	if err != nil {
		return err
	}
	err = unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		if err := syncDir(parent); err != nil {
			return err
		}
	case errors.Is(err, unix.ENOENT):
		// Already moved by an earlier, interrupted attempt, or never made.
	case errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOTEMPTY):
		// An earlier attempt left trash/<id> behind and the volume was
		// then re-created under the same ID (or a snapshot has the ID of
		// a volume), which IDs make impossible; refuse rather than guess
		// which copy is garbage.
		return fmt.Errorf("move %s to trash: %s: %w", src, dst, ErrExists)
	default:
		return fmt.Errorf("move %s to trash: %w", src, err)
	}
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("remove %s: %w", dst, err)
	}
	return syncDir(d.trash)
}

// Archive implements Pool.
func (d *Dir) Archive(id, dest string) error {
	src, err := d.Path(id)
	if err != nil {
		return err
	}
	dst, err := within(d.archive, dest)
	if err != nil {
		return err
	}
	// archive/ is made at startup; make it again in case an operator
	// removed it, so that ENOENT below can only mean a missing source.
	if err := os.MkdirAll(d.archive, 0o711); err != nil {
		return fmt.Errorf("create %s: %w", d.archive, err)
	}
	err = unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
	case errors.Is(err, unix.ENOENT):
		if _, statErr := os.Lstat(dst); statErr == nil {
			return nil // moved by an earlier, interrupted attempt
		}
		return fmt.Errorf("archive %s: %w", src, ErrNotFound)
	case errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOTEMPTY):
		return fmt.Errorf("archive %s to %s: %w", src, dst, ErrExists)
	default:
		return fmt.Errorf("archive %s: %w", src, err)
	}
	if err := syncDir(d.archive); err != nil {
		return err
	}
	return syncDir(d.volumes)
}

// ArchiveTaken implements Pool.
func (d *Dir) ArchiveTaken(dest string) (bool, error) {
	p, err := within(d.archive, dest)
	if err != nil {
		return false, err
	}
	_, err = os.Lstat(p)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	return false, err
}

// Stat implements Pool.
func (d *Dir) Stat() (FS, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(d.root, &st); err != nil {
		return FS{}, fmt.Errorf("statfs %s: %w", d.root, err)
	}
	bsize := int64(st.Bsize) //nolint:unconvert // Bsize is int64 on amd64 only
	return FS{
		AvailableBytes: int64(st.Bavail) * bsize,
		TotalBytes:     int64(st.Blocks) * bsize,
		TotalInodes:    int64(st.Files),
		FreeInodes:     int64(st.Ffree),
	}, nil
}

// Writable implements Pool. access(2) with W_OK reports EROFS for a
// read-only filesystem without writing anything, so Probe can call it often.
func (d *Dir) Writable() error {
	for _, p := range []string{d.volumes, d.snapshots, d.trash, d.archive, d.stageVolumes, d.stageSnapshots} {
		if err := unix.Access(p, unix.W_OK); err != nil {
			return fmt.Errorf("pool %q: %s is not writable: %w", d.name, p, err)
		}
	}
	return nil
}

// Scan implements Pool.
func (d *Dir) Scan() ([]string, []string, error) {
	entries, err := os.ReadDir(d.volumes)
	if err != nil {
		return nil, nil, fmt.Errorf("scan pool %q: %w", d.name, err)
	}
	var dirs, retained []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dirs = append(dirs, e.Name())
		if _, err := os.Lstat(filepath.Join(d.volumes, e.Name(), retainNoteName(e.Name()))); err == nil {
			retained = append(retained, e.Name())
		}
	}
	return dirs, retained, nil
}

// PurgeTrash implements Pool. Everything in the trash was moved there by a
// committed delete, so removing it loses nothing that was meant to be kept.
// It also removes the partial copies that snapshots, restores and clones
// interrupted by a crash left under .staging: such an operation never
// reported success, and its retry starts the copy afresh. Copies running in
// this process are left alone.
func (d *Dir) PurgeTrash() error {
	entries, err := os.ReadDir(d.trash)
	if err != nil {
		return fmt.Errorf("read trash of pool %q: %w", d.name, err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(d.trash, e.Name())); err != nil {
			return fmt.Errorf("purge trash of pool %q: %w", d.name, err)
		}
	}
	if err := syncDir(d.trash); err != nil {
		return err
	}
	for _, dir := range []string{d.stageVolumes, d.stageSnapshots} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("read partial copies of pool %q: %w", d.name, err)
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if d.staged(p) {
				continue
			}
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("remove partial copy in pool %q: %w", d.name, err)
			}
		}
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
