package pool

import (
	"errors"
	"fmt"

	"github.com/dirvol/dirvol/internal/btrfs"

	"golang.org/x/sys/unix"
)

// Snapshot implements Pool: snapshots/<snapID> becomes a read-only btrfs
// snapshot of the volume's subvolume. btrfs makes it in one step, after
// writing out what the volume's files hold in memory, and commits it
// before returning, so an existing snapshots/<snapID> is always a complete
// snapshot and no staging directory is needed. It shares all data with the
// volume until either changes. Subvolumes a workload made inside the volume
// appear in the snapshot as empty directories (btrfs snapshots one
// subvolume). A plain-directory volume cannot be snapshotted this way:
// ErrUnsupported.
func (b *Btrfs) Snapshot(volID, snapID string) error {
	src, err := b.Path(volID)
	if err != nil {
		return err
	}
	dst, err := within(b.dir.snapshots, snapID)
	if err != nil {
		return err
	}
	err = withVolume(src, ErrNotFound, func(sfd int, subvol bool) error {
		if !subvol {
			return plainDirUnsupported(volID, "snapshotted")
		}
		return withDirFD(b.dir.snapshots, func(dfd int) error {
			return btrfs.Snapshot(sfd, dfd, snapID, true)
		})
	})
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("snapshot %s: %w", dst, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("snapshot volume %s as %s: %w", volID, snapID, err)
	}
	return nil
}

func plainDirUnsupported(volID, what string) error {
	return fmt.Errorf("volume %s is a plain directory, made before its pool was a btrfs pool, and cannot be %s with btrfs; copy its data into a new volume to get one that can: %w",
		volID, what, ErrUnsupported)
}

// createFrom makes volume id at p a writable snapshot of spec's source
// and sizes it. An existing p is ErrExists (see Pool.Create).
func (b *Btrfs) createFrom(id, p string, spec VolumeSpec) error {
	src, missing, what := "", ErrNotFound, "cloned"
	var err error
	if spec.FromSnapshot != "" {
		src, err = within(b.dir.snapshots, spec.FromSnapshot)
		missing, what = ErrSnapshotNotFound, "restored"
	} else {
		src, err = b.Path(spec.FromVolume)
	}
	if err != nil {
		return err
	}
	err = withVolume(src, missing, func(sfd int, subvol bool) error {
		if !subvol {
			if spec.FromSnapshot != "" {
				return fmt.Errorf("snapshot %s is a plain directory, not a btrfs snapshot, and cannot be %s on a btrfs pool: %w", spec.FromSnapshot, what, ErrUnsupported)
			}
			return plainDirUnsupported(spec.FromVolume, what)
		}
		return withDirFD(b.dir.volumes, func(vfd int) error {
			return btrfs.Snapshot(sfd, vfd, id, false)
		})
	})
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create volume %s: %w", p, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create volume %s from %s: %w", id, src, err)
	}
	// A crash before the limit is set leaves an unlimited volume that no
	// caller was told about; recovery removes it.
	err = withVolume(p, ErrNotFound, func(fd int, _ bool) error {
		return b.finish(fd, p, spec, false)
	})
	if err != nil {
		return fmt.Errorf("size volume %s: %w", id, err)
	}
	return b.commit()
}

// SnapshotExists implements Pool.
func (b *Btrfs) SnapshotExists(snapID string) (bool, error) { return b.dir.SnapshotExists(snapID) }

// ScanSnapshots implements Pool.
func (b *Btrfs) ScanSnapshots() ([]string, error) { return b.dir.ScanSnapshots() }

// RemoveSnapshot implements Pool. A read-only snapshot cannot be moved into
// the trash (btrfs refuses to move a read-only subvolume to another
// directory), and needs not be: deleting a subvolume takes its directory
// entry away in one step, and btrfs frees its blocks in the background. A
// snapshot that is a plain directory is removed as Dir does.
func (b *Btrfs) RemoveSnapshot(snapID string) error {
	p, err := within(b.dir.snapshots, snapID)
	if err != nil {
		return err
	}
	subvolID, err := subvolumeAt(p, ErrSnapshotNotFound)
	switch {
	case errors.Is(err, ErrSnapshotNotFound):
		return nil
	case errors.Is(err, errPlainDir):
		return b.dir.RemoveSnapshot(snapID)
	case err != nil:
		return fmt.Errorf("remove snapshot %s: %w", snapID, err)
	}
	// The descriptor is closed: btrfs frees nothing while one is open.
	if err := b.deleteSubvolume(subvolID); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", snapID, err)
	}
	return b.commit()
}
