package pool

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/internal/btrfs"

	"golang.org/x/sys/unix"
)

// withoutPrefix drops every entry of a tree description at or under rel.
func withoutPrefix(desc map[string]string, rel string) map[string]string {
	out := make(map[string]string, len(desc))
	for k, v := range desc {
		if k != rel && !strings.HasPrefix(k, rel+"/") {
			out[k] = v
		}
	}
	return out
}

// nestSubvolumes makes, inside dir, what a workload could: a subvolume
// holding data and a read-only snapshot of it. It returns their IDs.
func nestSubvolumes(t *testing.T, dir string) []uint64 {
	t.Helper()
	must(t, withDirFD(dir, func(fd int) error { return btrfs.CreateSubvolume(fd, "nested") }))
	writeFile(t, filepath.Join(dir, "nested", "data"), "nested data")
	must(t, withDirFD(filepath.Join(dir, "nested"), func(sfd int) error {
		return withDirFD(dir, func(dfd int) error { return btrfs.Snapshot(sfd, dfd, "nested-ro", true) })
	}))
	return []uint64{subvolumeID(t, filepath.Join(dir, "nested")), subvolumeID(t, filepath.Join(dir, "nested-ro"))}
}

func TestBtrfsRemove(t *testing.T) {
	b, root := newBtrfsPool(t, 256<<20)
	p := btCreate(t, b, testID, VolumeSpec{Bytes: 32 << 20})
	fillVolume(t, p)
	ids := append([]uint64{subvolumeID(t, p)}, nestSubvolumes(t, p)...)
	p2 := btCreate(t, b, btVol2, VolumeSpec{Bytes: 32 << 20})
	writeFile(t, filepath.Join(p2, "data"), "neighbour")
	must(t, b.Snapshot(btVol2, btSnapID))
	before := withoutPrefix(tree(t, root), "volumes/"+testID)

	for attempt := range 2 {
		if err := b.Remove(testID); err != nil {
			t.Fatalf("Remove #%d: %v", attempt+1, err)
		}
	}
	sameTree(t, "pool after Remove", before, tree(t, root))
	if err := b.Remove("vol-never-made"); err != nil {
		t.Errorf("Remove of a volume never made: %v", err)
	}
	waitQgroupsGone(t, b, ids...)
	if limit, ok := limitOf(t, p2); !ok || limit != 32<<20 {
		t.Errorf("neighbour's limit %d (%v)", limit, ok)
	}
}

func TestBtrfsRemoveSnapshot(t *testing.T) {
	b, root := newBtrfsPool(t, 256<<20)
	p := btCreate(t, b, testID, VolumeSpec{Bytes: 32 << 20})
	fillVolume(t, p)
	must(t, b.Snapshot(testID, btSnapID))
	must(t, b.Snapshot(testID, btSnapID2))
	id := subvolumeID(t, filepath.Join(root, "snapshots", btSnapID))
	before := withoutPrefix(tree(t, root), "snapshots/"+btSnapID)

	for attempt := range 2 {
		if err := b.RemoveSnapshot(btSnapID); err != nil {
			t.Fatalf("RemoveSnapshot #%d: %v", attempt+1, err)
		}
	}
	sameTree(t, "pool after RemoveSnapshot", before, tree(t, root))
	if ok, err := b.SnapshotExists(btSnapID); ok || err != nil {
		t.Errorf("SnapshotExists after removal = %v, %v", ok, err)
	}
	waitQgroupsGone(t, b, id)

	// A volume and its snapshot are independent: either can go first.
	must(t, b.Remove(testID))
	sameTree(t, "remaining snapshot", withoutPrefix(before, "volumes/"+testID),
		withoutPrefix(tree(t, root), "volumes/"+testID))
}

// A crash after a volume went to the trash leaves it there; PurgeTrash
// deletes it, subvolume or not, and drops quota groups whose subvolume is
// gone.
func TestBtrfsPurgeTrash(t *testing.T) {
	b, root := newBtrfsPool(t, 256<<20)
	p := btCreate(t, b, testID, VolumeSpec{Bytes: 32 << 20})
	fillVolume(t, p)
	ids := append([]uint64{subvolumeID(t, p)}, nestSubvolumes(t, p)...)
	must(t, os.Rename(p, filepath.Join(root, ".trash", testID)))
	plain := filepath.Join(root, ".trash", btVol2)
	writeFile(t, filepath.Join(plain, "a", "b"), "plain")
	ids = append(ids, nestSubvolumes(t, plain)...)

	// A quota group left by a subvolume deleted without dropping it.
	must(t, withDirFD(root, func(fd int) error { return btrfs.CreateSubvolume(fd, "stray") }))
	stray := subvolumeID(t, filepath.Join(root, "stray"))
	must(t, withDirFD(root, func(fd int) error {
		_, err := btrfs.DeleteSubvolume(fd, stray)
		return err
	}))
	ids = append(ids, stray)
	before := withoutPrefix(tree(t, root), ".trash/"+testID)
	before = withoutPrefix(before, ".trash/"+btVol2)

	// The pool forgets what it remembered, as a restart does.
	fresh, err := NewBtrfs("bt", root)
	must(t, err)
	waitSubvolumesFreed(t, fresh, stray)
	must(t, fresh.PurgeTrash())
	sameTree(t, "pool after PurgeTrash", before, tree(t, root))
	if got := entries(t, filepath.Join(root, ".trash")); len(got) != 0 {
		t.Errorf(".trash holds %v", got)
	}
	waitQgroupsGone(t, fresh, ids...)
}

func waitSubvolumesFreed(t *testing.T, b *Btrfs, ids ...uint64) {
	t.Helper()
	for _, id := range ids {
		must(t, b.withRoot(func(fd int) error {
			for {
				if err := btrfs.Commit(fd); err != nil {
					return err
				}
				ok, err := btrfs.SubvolumeExists(fd, id)
				if err != nil || !ok {
					return err
				}
			}
		}))
	}
}

// A pool that was a dir pool on btrfs has plain-directory volumes; they
// keep working, except for what needs a subvolume.
func TestBtrfsPlainDirectoryVolumes(t *testing.T) {
	b, root := newBtrfsPool(t, 256<<20)
	p := filepath.Join(root, "volumes", testID)
	must(t, os.Mkdir(p, 0o777))
	fillVolume(t, p)
	nested := nestSubvolumes(t, p)
	randomFile(t, filepath.Join(p, "size"), 4<<20, 3)
	must(t, syncFS(root))

	if exists, err := b.Exists(testID); !exists || err != nil {
		t.Fatalf("Exists = %v, %v", exists, err)
	}
	u, err := b.Usage(testID)
	must(t, err)
	if u.Bytes < 4<<20 || u.Inodes < 10 {
		t.Errorf("Usage of a plain directory = %+v; want it walked", u)
	}
	must(t, b.Create(testID, VolumeSpec{Bytes: 8 << 20, Perm: btPerm})) // kept
	must(t, b.Expand(testID, 16<<20))
	if err := b.Snapshot(testID, btSnapID); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "plain directory") {
		t.Errorf("Snapshot of a plain directory = %v, want ErrUnsupported saying why", err)
	}
	if err := b.Create(btVol2, VolumeSpec{Bytes: 64 << 20, FromVolume: testID, Perm: btPerm}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("clone of a plain directory = %v, want ErrUnsupported", err)
	}
	before := withoutPrefix(tree(t, root), "volumes/"+testID)
	must(t, b.Remove(testID))
	sameTree(t, "pool after Remove", before, tree(t, root))
	waitQgroupsGone(t, b, nested...)
}

// A symbolic link a workload planted in its volume is removed, never
// followed, subvolume or not.
func TestBtrfsRemoveDoesNotFollowLinks(t *testing.T) {
	b, root := newBtrfsPool(t, 256<<20)
	outside := filepath.Join(filepath.Dir(root), "outside")
	writeFile(t, filepath.Join(outside, "file"), "outside")
	must(t, withDirFD(filepath.Dir(root), func(fd int) error { return btrfs.CreateSubvolume(fd, "outside-subvol") }))
	before := tree(t, filepath.Dir(root))
	before = withoutPrefix(before, "pool/volumes/"+testID)

	p := btCreate(t, b, testID, VolumeSpec{Bytes: 8 << 20})
	must(t, os.Symlink(outside, filepath.Join(p, "to-outside")))
	must(t, os.Symlink(filepath.Join(filepath.Dir(root), "outside-subvol"), filepath.Join(p, "to-subvol")))
	must(t, b.Remove(testID))
	sameTree(t, "outside", before, tree(t, filepath.Dir(root)))
	if err := unix.Access(filepath.Join(filepath.Dir(root), "outside-subvol"), unix.F_OK); err != nil {
		t.Errorf("subvolume outside the pool: %v", err)
	}
}
