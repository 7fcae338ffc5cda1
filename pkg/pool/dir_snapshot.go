package pool

import (
	"fmt"
	"os"
)

// Snapshot implements Pool: snapshots/<snapID> becomes a copy of volume
// volID's directory (data shared through reflinks where the filesystem can,
// copied otherwise), made under .staging and renamed into place when
// complete, so an existing snapshot directory is always a complete snapshot.
// The copy of a volume that is being written is consistent per file where
// data is reflinked (FICLONE is atomic) and not even that where it is
// copied; a block volume's file is reflinked or copied like any file.
func (d *Dir) Snapshot(volID, snapID string) error {
	src, err := d.Path(volID)
	if err != nil {
		return err
	}
	dst, err := within(d.snapshots, snapID)
	if err != nil {
		return err
	}
	stage, err := within(d.stageSnapshots, snapID)
	if err != nil {
		return err
	}
	return d.copyIn(copyJob{what: "snapshot", src: src, missing: ErrNotFound, dst: dst, stage: stage})
}

// SnapshotExists implements Pool.
func (d *Dir) SnapshotExists(snapID string) (bool, error) {
	p, err := within(d.snapshots, snapID)
	if err != nil {
		return false, err
	}
	return isDir(p)
}

// RemoveSnapshot implements Pool like Remove: the snapshot's directory is
// renamed into the trash, then removed without following links.
func (d *Dir) RemoveSnapshot(snapID string) error { return d.discard(d.snapshots, snapID) }

// ScanSnapshots implements Pool. Partial copies live under .staging, so
// every directory here is a complete snapshot.
func (d *Dir) ScanSnapshots() ([]string, error) {
	entries, err := os.ReadDir(d.snapshots)
	if err != nil {
		return nil, fmt.Errorf("scan snapshots of pool %q: %w", d.name, err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}
