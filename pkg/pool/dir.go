package pool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Layout of a pool's root directory.
const (
	volumesDir = "volumes"
	archiveDir = "archive"
	trashDir   = ".trash"
)

// Dir is the backend for any filesystem: a volume is a plain directory.
// Sizes are reserved by the volume core but not enforced: a writer can fill
// the filesystem.
type Dir struct {
	name    string
	root    string
	volumes string
	archive string
	trash   string
}

var _ Pool = (*Dir)(nil)

// NewDir prepares a dir pool rooted at root, creating its layout when
// missing. It starts nothing.
func NewDir(name, root string) (*Dir, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("pool name: %w", err)
	}
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("pool %q: path %q is not absolute", name, root)
	}
	root = filepath.Clean(root)
	d := &Dir{
		name:    name,
		root:    root,
		volumes: filepath.Join(root, volumesDir),
		archive: filepath.Join(root, archiveDir),
		trash:   filepath.Join(root, trashDir),
	}
	for _, p := range []string{d.volumes, d.archive, d.trash} {
		if err := os.MkdirAll(p, 0o711); err != nil {
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

// Path implements Pool.
func (d *Dir) Path(id string) (string, error) { return within(d.volumes, id) }

// Create implements Pool.
func (d *Dir) Create(id string, spec VolumeSpec) error {
	perm := spec.Perm
	p, err := d.Path(id)
	if err != nil {
		return err
	}
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create volume directory: %w", err)
	}
	// Mkdir is subject to the umask; Chmod sets exactly the requested mode.
	if err := os.Chmod(p, os.FileMode(perm.Mode)&os.ModePerm); err != nil {
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
func (d *Dir) Remove(id string) error {
	src, err := d.Path(id)
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
		if err := syncDir(d.volumes); err != nil {
			return err
		}
	case errors.Is(err, unix.ENOENT):
		// Already moved by an earlier, interrupted attempt, or never made.
	case errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOTEMPTY):
		// An earlier attempt left trash/<id> behind and the volume was
		// then re-created under the same ID, which IDs make impossible;
		// refuse rather than guess which copy is garbage.
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
	for _, p := range []string{d.volumes, d.trash, d.archive} {
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
	return syncDir(d.trash)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
