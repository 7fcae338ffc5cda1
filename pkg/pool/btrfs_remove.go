package pool

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/dirvol/dirvol/internal/btrfs"

	"golang.org/x/sys/unix"
)

// Remove implements Pool. The volume is renamed into the trash, as on a
// dir pool, so a crash never leaves a half-deleted volume under volumes/,
// and then deleted: a subvolume by its ID, with every subvolume a workload
// made inside it (read-only snapshots too), which takes a moment whatever
// it holds; a plain-directory volume as Dir does. Its quota groups go too.
func (b *Btrfs) Remove(id string) error {
	src, err := b.Path(id)
	if err != nil {
		return err
	}
	dst, err := within(b.dir.trash, id)
	if err != nil {
		return err
	}
	err = unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
	case errors.Is(err, unix.ENOENT):
		// Already moved by an earlier, interrupted attempt, or never made.
	case errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOTEMPTY):
		// See Dir.Remove: IDs make this impossible; refuse to guess.
		return fmt.Errorf("move %s to trash: %s: %w", src, dst, ErrExists)
	default:
		return fmt.Errorf("move %s to trash: %w", src, err)
	}
	if err := b.purge(id); err != nil {
		return err
	}
	if err := b.commit(); err != nil {
		return err
	}
	if b.limits {
		// A delete is when the kernel is likeliest to lose count: look
		// at once (one tree search) rather than at the next Check. The
		// volume is gone either way; what the check finds is the pool's
		// state, logged and reported there, not this removal's.
		_ = b.checkQuota(true)
	}
	return nil
}

// PurgeTrash implements Pool: it deletes what is in the trash as Remove
// does, then lets Dir clear what copies interrupted by a crash left behind,
// and drops the quota groups of subvolumes that no longer exist, including
// those a crash kept Remove from dropping. Like `btrfs qgroup clear-stale`
// it does so on the whole filesystem: a level-0 group outliving its
// subvolume accounts nothing and limits nothing.
func (b *Btrfs) PurgeTrash() error {
	entries, err := os.ReadDir(b.dir.trash)
	if err != nil {
		return fmt.Errorf("read trash of pool %q: %w", b.Name(), err)
	}
	for _, e := range entries {
		if err := b.purge(e.Name()); err != nil {
			return fmt.Errorf("purge trash of pool %q: %w", b.Name(), err)
		}
	}
	if err := b.dir.PurgeTrash(); err != nil {
		return err
	}
	err = b.withRoot(func(fd int) error {
		groups, err := btrfs.Qgroups(fd)
		if err != nil {
			return err
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, g := range groups {
			if g < firstSubvolumeID {
				continue
			}
			exists, err := btrfs.SubvolumeExists(fd, g)
			if err != nil {
				return err
			}
			if !exists {
				b.unfreed[g] = true
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pool %q: %w", b.Name(), err)
	}
	if err := b.dropUnfreed(); err != nil {
		return err
	}
	return b.commit()
}

// firstSubvolumeID is the lowest ID btrfs gives a subvolume; 5 is the
// top-level subvolume, whose group is never dropped.
const firstSubvolumeID = 256

// subvolumeAt returns the ID of the subvolume at p, errPlainDir when p is a
// plain directory, and missing when nothing is there. The descriptor it
// opens is closed on return: btrfs deletes nothing while one is open.
func subvolumeAt(p string, missing error) (uint64, error) {
	var id uint64
	err := withVolume(p, missing, func(fd int, subvol bool) (err error) {
		if !subvol {
			return errPlainDir
		}
		id, err = btrfs.SubvolumeID(fd)
		return err
	})
	return id, err
}

// purge deletes trash entry name, a subvolume or a plain directory.
func (b *Btrfs) purge(name string) error {
	p, err := within(b.dir.trash, name)
	if err != nil {
		return err
	}
	subvolID, err := subvolumeAt(p, ErrNotFound)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case errors.Is(err, errPlainDir):
		return b.removeTree(p)
	case err != nil:
		return err
	}
	return b.deleteSubvolume(subvolID)
}

// removeTree removes plain directory p as Dir does, without following
// links. os.RemoveAll also removes an empty subvolume, but not a read-only
// one or one it cannot empty; when it fails, the subvolumes inside p are
// deleted by ID and it runs again.
func (b *Btrfs) removeTree(p string) error {
	if err := os.RemoveAll(p); err == nil {
		return nil
	}
	ids, err := nestedSubvolumes(p)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := b.deleteSubvolume(id); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// nestedSubvolumes returns the IDs of the outermost subvolumes inside plain
// directory root. The walk never follows links, and each candidate is
// opened beneath root without following any link, so a directory a
// workload swaps for a link while this runs cannot lead outside root.
func nestedSubvolumes(root string) ([]uint64, error) {
	rootfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(rootfd)
	var ids []uint64
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == root || !e.IsDir() {
			return nil // partial removal leaves holes; skip them
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fd, err := unix.Openat2(rootfd, rel, &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err != nil {
			return nil
		}
		defer unix.Close(fd)
		subvol, err := btrfs.IsSubvolume(fd)
		if err != nil || !subvol {
			return nil
		}
		id, err := btrfs.SubvolumeID(fd)
		if err != nil {
			return err
		}
		ids = append(ids, id)
		return filepath.SkipDir
	})
	if err != nil {
		return nil, fmt.Errorf("find subvolumes inside %s: %w", root, err)
	}
	return ids, nil
}

// deleteSubvolume deletes subvolume id and those nested in it, and
// remembers their quota groups for dropUnfreed: btrfs frees a deleted
// subvolume's blocks in the background, and its group must outlive that.
func (b *Btrfs) deleteSubvolume(id uint64) error {
	return b.withRoot(func(fd int) error {
		deleted, err := btrfs.DeleteSubvolume(fd, id)
		b.mu.Lock()
		for _, d := range deleted {
			b.unfreed[d] = true
		}
		b.mu.Unlock()
		return err
	})
}

func (b *Btrfs) dropUnfreed() error { return b.withRoot(b.dropUnfreedFD) }

// dropUnfreedFD destroys the remembered quota groups whose subvolumes
// btrfs has finished dropping, and keeps the others for a later call.
//
// A group is destroyed only once its subvolume's root item is gone, a
// transaction commit has accounted the last blocks freed, and the group
// accounts zero bytes. Destroying it earlier, while the cleaner is still
// freeing the subvolume or before the commit that accounts the frees, is
// what the kernel answers with "qgroup marked inconsistent, to be deleted
// qgroup 0/N has non-zero numbers": from then on every group of the
// filesystem reads wrong and no limit holds until a rescan. Kernels that
// drop an emptied group themselves leave nothing to destroy (ENOENT).
func (b *Btrfs) dropUnfreedFD(fd int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var dropped []uint64
	for _, id := range slices.Sorted(maps.Keys(b.unfreed)) {
		exists, err := btrfs.SubvolumeExists(fd, id)
		if err != nil {
			return err
		}
		if !exists {
			dropped = append(dropped, id)
		}
	}
	if len(dropped) == 0 {
		return nil
	}
	if err := btrfs.Commit(fd); err != nil {
		return err
	}
	for _, id := range dropped {
		u, err := btrfs.QgroupUsage(fd, id)
		switch {
		case errors.Is(err, unix.ENOENT):
			delete(b.unfreed, id) // gone already
			continue
		case err != nil:
			return err
		case u.Referenced != 0 || u.Exclusive != 0:
			continue // not accounted yet; try again later
		}
		err = btrfs.DestroyQgroup(fd, id)
		switch {
		case err == nil:
			delete(b.unfreed, id)
		case errors.Is(err, unix.EBUSY):
		default:
			return err
		}
	}
	return nil
}
