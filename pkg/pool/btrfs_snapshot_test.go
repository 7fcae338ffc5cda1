package pool

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestBtrfsSnapshot(t *testing.T) {
	b, root := newBtrfsPool(t, 512<<20)
	p := btCreate(t, b, testID, VolumeSpec{Bytes: 64 << 20})
	fillVolume(t, p)
	before := tree(t, p)

	must(t, b.Snapshot(testID, btSnapID))
	snap := filepath.Join(root, "snapshots", btSnapID)
	sameTree(t, "snapshot", before, tree(t, snap))
	if ok, err := b.SnapshotExists(btSnapID); !ok || err != nil {
		t.Errorf("SnapshotExists = %v, %v", ok, err)
	}
	if ids, err := b.ScanSnapshots(); err != nil || len(ids) != 1 || ids[0] != btSnapID {
		t.Errorf("ScanSnapshots = %v, %v", ids, err)
	}

	// Later writes to the volume do not reach the snapshot.
	writeFile(t, filepath.Join(p, "data", "a"), "changed")
	writeFile(t, filepath.Join(p, "new"), "new")
	must(t, os.Remove(filepath.Join(p, "private")))
	sameTree(t, "snapshot after the volume changed", before, tree(t, snap))

	// The snapshot is read-only.
	if err := os.WriteFile(filepath.Join(snap, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("writing into the snapshot: %v, want EROFS", err)
	}
	if err := os.Remove(filepath.Join(snap, "random")); !errors.Is(err, unix.EROFS) {
		t.Errorf("removing from the snapshot: %v, want EROFS", err)
	}

	if err := b.Snapshot(testID, btSnapID); !errors.Is(err, ErrExists) {
		t.Errorf("second Snapshot = %v, want ErrExists", err)
	}
	if err := b.Snapshot(btVol2, btSnapID2); !errors.Is(err, ErrNotFound) {
		t.Errorf("Snapshot of a missing volume = %v, want ErrNotFound", err)
	}
	if err := b.Snapshot(testID, "../x"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Snapshot to ../x = %v, want ErrInvalidName", err)
	}
}

func TestBtrfsRestoreAndClone(t *testing.T) {
	b, root := newBtrfsPool(t, 512<<20)
	p := btCreate(t, b, testID, VolumeSpec{Bytes: 32 << 20, Perm: Permissions{Mode: 0o750, UID: 1000, GID: 1000}})
	fillVolume(t, p)
	must(t, b.Snapshot(testID, btSnapID))
	snapTree := tree(t, p)
	writeFile(t, filepath.Join(p, "after-snapshot"), "later")
	volTree := tree(t, p)

	const restored, cloned = "vol-b0000000000000000000000000000003", "vol-b0000000000000000000000000000004"
	r := btCreate(t, b, restored, VolumeSpec{Bytes: 48 << 20, FromSnapshot: btSnapID})
	sameTree(t, "restore", snapTree, tree(t, r))
	c := btCreate(t, b, cloned, VolumeSpec{Bytes: 40 << 20, FromVolume: testID})
	sameTree(t, "clone", volTree, tree(t, c))

	writeFile(t, filepath.Join(r, "data", "a"), "changed in the restore")
	for _, v := range []struct {
		dir   string
		limit int64
	}{{r, 48 << 20}, {c, 40 << 20}} {
		if limit, ok := limitOf(t, v.dir); !ok || limit != uint64(v.limit) {
			t.Errorf("%s: limit %d (%v), want %d", v.dir, limit, ok, v.limit)
		}
		// Writable, and limited: the copy starts with about 1 MiB.
		n, err := fillUntilError(t, filepath.Join(v.dir, "fill"), 128<<20)
		if !isQuotaError(err) || n < 30<<20 || n > v.limit {
			t.Errorf("%s: filling wrote %d bytes and ended with %v; want EDQUOT below %d", v.dir, n, err, v.limit)
		}
	}
	// Neither the source nor the snapshot saw those writes.
	sameTree(t, "snapshot", snapTree, tree(t, filepath.Join(root, "snapshots", btSnapID)))
	sameTree(t, "source volume", volTree, tree(t, p))

	if err := b.Create(restored, VolumeSpec{Bytes: 48 << 20, FromSnapshot: btSnapID, Perm: btPerm}); !errors.Is(err, ErrExists) {
		t.Errorf("restore onto an existing volume = %v, want ErrExists", err)
	}
	if err := b.Create(btVol2, VolumeSpec{Bytes: 48 << 20, FromSnapshot: btSnapID2, Perm: btPerm}); !errors.Is(err, ErrSnapshotNotFound) {
		t.Errorf("restore from a missing snapshot = %v, want ErrSnapshotNotFound", err)
	}
	if err := b.Create(btVol2, VolumeSpec{Bytes: 48 << 20, FromVolume: "vol-missing", Perm: btPerm}); !errors.Is(err, ErrNotFound) {
		t.Errorf("clone of a missing volume = %v, want ErrNotFound", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "volumes", btVol2)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed restore left %s: %v", btVol2, err)
	}
}
