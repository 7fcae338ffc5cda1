package pool

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/dirvol/dirvol/internal/testfs"

	"golang.org/x/sys/unix"
)

const (
	testSnap  = "snap-0123456789abcdef0123456789abcdef"
	cloneID   = "vol-c10e0000000000000000000000000000"
	restoreID = "vol-4e5704e0000000000000000000000000"
)

// copyKinds are the filesystems the copying methods are tested on: ext4
// copies data, XFS with reflink shares it.
var copyKinds = []testfs.Kind{testfs.Ext4, testfs.XFS}

// newDirOn makes a dir pool on a fresh filesystem of kind k.
func newDirOn(t *testing.T, k testfs.Kind) (*Dir, string) {
	t.Helper()
	mnt := testfs.Mount(t, k, 1<<30)
	root := filepath.Join(mnt, "pool")
	d, err := NewDir("default", root)
	if err != nil {
		t.Fatalf("NewDir: %v", err)
	}
	return d, root
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fillVolume writes into dir a bit of everything a workload makes.
func fillVolume(t *testing.T, dir string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, "data", "a"), "first file")
	writeFile(t, filepath.Join(dir, "data", "nested", "deeper", "b"), "second file")
	writeFile(t, filepath.Join(dir, "private"), "private")
	must(t, os.Chmod(filepath.Join(dir, "private"), 0o600))
	must(t, os.Lchown(filepath.Join(dir, "private"), 1000, 2000))
	writeFile(t, filepath.Join(dir, "setuid"), "#!/bin/sh")
	must(t, os.Chmod(filepath.Join(dir, "setuid"), 0o755|os.ModeSetuid))
	must(t, os.Mkdir(filepath.Join(dir, "tmp"), 0o777))
	must(t, os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky))
	writeFile(t, filepath.Join(dir, "empty"), "")
	must(t, os.Symlink("/etc", filepath.Join(dir, "etc")))
	must(t, os.Symlink("data/a", filepath.Join(dir, "a-link")))
	must(t, os.Link(filepath.Join(dir, "data", "a"), filepath.Join(dir, "hard-a")))
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	must(t, unix.Setxattr(filepath.Join(dir, "data", "a"), "user.kind", []byte("test"), 0))
	randomFile(t, filepath.Join(dir, "random"), 1<<20, 7)
}

func randomFile(t testing.TB, p string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(p)
	must(t, err)
	defer f.Close()
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	buf := make([]byte, 1<<20)
	for left := size; left > 0; left -= int64(len(buf)) {
		n := min(left, int64(len(buf)))
		_, _ = r.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
	}
	must(t, f.Close())
}

// available flushes the pool's filesystem and returns its free space.
func available(t *testing.T, d *Dir) int64 {
	t.Helper()
	must(t, syncFS(d.Root()))
	fs, err := d.Stat()
	must(t, err)
	return fs.AvailableBytes
}

func staged(t *testing.T, root string) []string {
	t.Helper()
	return append(entries(t, filepath.Join(root, ".staging", "volumes")), entries(t, filepath.Join(root, ".staging", "snapshots"))...)
}

func TestSnapshot(t *testing.T) {
	for _, k := range copyKinds {
		t.Run(string(k), func(t *testing.T) {
			d, root := newDirOn(t, k)
			vol := mustCreate(t, d, testID)
			fillVolume(t, vol)
			want := tree(t, vol)

			if ok, err := d.SnapshotExists(testSnap); ok || err != nil {
				t.Errorf("SnapshotExists before = %v, %v", ok, err)
			}
			if err := d.Snapshot(testID, testSnap); err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			snap := filepath.Join(root, "snapshots", testSnap)
			sameTree(t, "snapshot", want, tree(t, snap))
			if ok, err := d.SnapshotExists(testSnap); !ok || err != nil {
				t.Errorf("SnapshotExists = %v, %v", ok, err)
			}
			if ids, err := d.ScanSnapshots(); err != nil || !reflect.DeepEqual(ids, []string{testSnap}) {
				t.Errorf("ScanSnapshots = %v, %v", ids, err)
			}
			if got := staged(t, root); len(got) != 0 {
				t.Errorf(".staging holds %v", got)
			}

			// Later writes to the volume do not reach the snapshot.
			writeFile(t, filepath.Join(vol, "data", "a"), "changed through the hard link too")
			f, err := os.OpenFile(filepath.Join(vol, "random"), os.O_WRONLY, 0)
			must(t, err)
			_, err = f.WriteAt([]byte("overwritten"), 4096)
			must(t, err)
			must(t, f.Close())
			must(t, os.Remove(filepath.Join(vol, "data", "nested", "deeper", "b")))
			writeFile(t, filepath.Join(vol, "new"), "new file")
			must(t, os.Chmod(vol, 0o700))
			must(t, unix.Setxattr(filepath.Join(vol, "data", "a"), "user.kind", []byte("changed"), 0))
			sameTree(t, "snapshot after writes to the volume", want, tree(t, snap))
			if v, err := unix.Getxattr(filepath.Join(snap, "data", "a"), "user.kind", make([]byte, 64)); err != nil || v != 4 {
				t.Errorf("xattr in snapshot: %d bytes, %v", v, err)
			}

			// Retries and wrong calls change nothing.
			before := tree(t, root)
			if err := d.Snapshot(testID, testSnap); !errors.Is(err, ErrExists) {
				t.Errorf("Snapshot to an existing snapshot = %v, want ErrExists", err)
			}
			if err := d.Snapshot("vol-missing", "snap-other"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Snapshot of a missing volume = %v, want ErrNotFound", err)
			}
			sameTree(t, "pool after refused snapshots", before, tree(t, root))

			// The snapshot is independent of its volume.
			must(t, d.Remove(testID))
			sameTree(t, "snapshot after its volume was removed", want, tree(t, snap))
		})
	}
}

// A snapshot on a filesystem with reflink shares the volume's data: it takes
// next to no space. A plain copy takes as much as the data.
func TestSnapshotSpace(t *testing.T) {
	const size = 64 << 20
	for _, k := range copyKinds {
		t.Run(string(k), func(t *testing.T) {
			d, _ := newDirOn(t, k)
			vol := mustCreate(t, d, testID)
			randomFile(t, filepath.Join(vol, "big"), size, 1)
			free := available(t, d)
			must(t, d.Snapshot(testID, testSnap))
			snapUsed := free - available(t, d)
			free = available(t, d)
			must(t, d.Create(restoreID, VolumeSpec{FromSnapshot: testSnap, Perm: Permissions{Mode: 0o777, UID: -1, GID: -1}}))
			restoreUsed := free - available(t, d)
			reflink, err := d.Reflinks()
			must(t, err)
			if reflink != (k == testfs.XFS) {
				t.Errorf("Reflinks = %v on %s", reflink, k)
			}
			for what, used := range map[string]int64{"snapshot": snapUsed, "restore": restoreUsed} {
				if reflink && used > 4<<20 {
					t.Errorf("%s of %d MiB used %d KiB with reflink", what, size>>20, used>>10)
				}
				if !reflink && used < size {
					t.Errorf("%s of %d MiB used only %d KiB with a plain copy", what, size>>20, used>>10)
				}
			}
		})
	}
}

func TestRestoreAndClone(t *testing.T) {
	perm := Permissions{Mode: 0o777, UID: -1, GID: -1}
	for _, k := range copyKinds {
		t.Run(string(k), func(t *testing.T) {
			d, root := newDirOn(t, k)
			vol := mustCreate(t, d, testID)
			fillVolume(t, vol)
			// The source's root has its own mode and owner, which a
			// restore and a clone keep whatever spec.Perm says.
			must(t, os.Chmod(vol, 0o750))
			must(t, os.Lchown(vol, 1001, 1002))
			want := tree(t, vol)
			must(t, d.Snapshot(testID, testSnap))
			writeFile(t, filepath.Join(vol, "after-snapshot"), "only in the volume and its clone")
			wantClone := tree(t, vol)

			if err := d.Create(restoreID, VolumeSpec{FromSnapshot: testSnap, Perm: perm}); err != nil {
				t.Fatalf("restore: %v", err)
			}
			restored, _ := d.Path(restoreID)
			sameTree(t, "restored volume", want, tree(t, restored))
			if err := d.Create(cloneID, VolumeSpec{FromVolume: testID, Perm: perm}); err != nil {
				t.Fatalf("clone: %v", err)
			}
			clone, _ := d.Path(cloneID)
			sameTree(t, "clone", wantClone, tree(t, clone))
			if got := staged(t, root); len(got) != 0 {
				t.Errorf(".staging holds %v", got)
			}

			// Round trip: each is independent of the others.
			snapshot := filepath.Join(root, "snapshots", testSnap)
			snapTree, volTree := tree(t, snapshot), tree(t, vol)
			writeFile(t, filepath.Join(restored, "data", "a"), "written in the restored volume")
			writeFile(t, filepath.Join(clone, "random"), "written in the clone")
			sameTree(t, "snapshot after writes to its restore", snapTree, tree(t, snapshot))
			sameTree(t, "volume after writes to its clone", volTree, tree(t, vol))

			// Refusals change nothing.
			before := tree(t, root)
			refusals := []struct {
				name string
				id   string
				spec VolumeSpec
				want error
			}{
				{"restore onto an existing volume", cloneID, VolumeSpec{FromSnapshot: testSnap, Perm: perm}, ErrExists},
				{"clone onto its source", testID, VolumeSpec{FromVolume: testID, Perm: perm}, ErrExists},
				{"missing snapshot", "vol-new", VolumeSpec{FromSnapshot: "snap-missing", Perm: perm}, ErrSnapshotNotFound},
				{"missing volume", "vol-new", VolumeSpec{FromVolume: "vol-missing", Perm: perm}, ErrNotFound},
				{"both sources", "vol-new", VolumeSpec{FromSnapshot: testSnap, FromVolume: testID, Perm: perm}, nil},
			}
			for _, r := range refusals {
				err := d.Create(r.id, r.spec)
				if err == nil || (r.want != nil && !errors.Is(err, r.want)) {
					t.Errorf("%s: Create = %v, want %v", r.name, err, r.want)
				}
			}
			sameTree(t, "pool after refused creates", before, tree(t, root))
		})
	}
}

func TestRemoveSnapshot(t *testing.T) {
	d, root := newDir(t)
	outside := filepath.Join(filepath.Dir(root), "outside")
	writeFile(t, filepath.Join(outside, "file"), "outside")
	vol := mustCreate(t, d, testID)
	fillVolume(t, vol)
	must(t, os.Symlink(outside, filepath.Join(vol, "to-outside")))
	must(t, os.Symlink(filepath.Join(outside, "file"), filepath.Join(vol, "data", "to-outside-file")))
	must(t, d.Snapshot(testID, testSnap))
	must(t, d.Snapshot(testID, "snap-other"))
	// A snapshot made unremovable by its modes is removed all the same.
	must(t, os.Chmod(filepath.Join(root, "snapshots", testSnap, "data"), 0o500))
	before := tree(t, filepath.Dir(root))

	for attempt := range 2 {
		if err := d.RemoveSnapshot(testSnap); err != nil {
			t.Fatalf("RemoveSnapshot #%d: %v", attempt+1, err)
		}
	}
	if err := d.RemoveSnapshot("snap-never-made"); err != nil {
		t.Errorf("RemoveSnapshot of a snapshot never made: %v", err)
	}
	after := tree(t, filepath.Dir(root))
	prefix := filepath.Join("pool", "snapshots", testSnap)
	for k := range before {
		if k == prefix || strings.HasPrefix(k, prefix+"/") {
			delete(before, k)
		}
	}
	sameTree(t, "everything but the removed snapshot", before, after)
	if ok, err := d.SnapshotExists(testSnap); ok || err != nil {
		t.Errorf("SnapshotExists after removal = %v, %v", ok, err)
	}
	if ids, err := d.ScanSnapshots(); err != nil || !reflect.DeepEqual(ids, []string{"snap-other"}) {
		t.Errorf("ScanSnapshots = %v, %v", ids, err)
	}
	if got := entries(t, filepath.Join(root, ".trash")); len(got) != 0 {
		t.Errorf(".trash holds %v", got)
	}
}

func TestScanSnapshots(t *testing.T) {
	d, root := newDir(t)
	if ids, err := d.ScanSnapshots(); err != nil || len(ids) != 0 {
		t.Fatalf("ScanSnapshots of an empty pool = %v, %v", ids, err)
	}
	mustCreate(t, d, testID)
	for _, id := range []string{"snap-c", "snap-a", "snap-b"} {
		must(t, d.Snapshot(testID, id))
	}
	writeFile(t, filepath.Join(root, "snapshots", "a-file"), "")
	// A copy in progress (or left by a crash) is not a snapshot.
	must(t, os.Mkdir(filepath.Join(root, ".staging", "snapshots", "snap-partial"), 0o700))
	ids, err := d.ScanSnapshots()
	if want := []string{"snap-a", "snap-b", "snap-c"}; err != nil || !reflect.DeepEqual(ids, want) {
		t.Errorf("ScanSnapshots = %v, %v; want %v", ids, err, want)
	}
	writeFile(t, filepath.Join(root, "snapshots", "snap-file"), "")
	if _, err := d.SnapshotExists("snap-file"); err == nil {
		t.Error("SnapshotExists of a regular file is not an error")
	}
}

// A crash in the middle of a copy leaves a partial copy under .staging, never
// under volumes/ or snapshots/. PurgeTrash (at startup) removes it, and so
// does a retry of the same operation; a copy running now is left alone.
func TestPartialCopies(t *testing.T) {
	d, root := newDir(t)
	vol := mustCreate(t, d, testID)
	fillVolume(t, vol)
	want := tree(t, vol)
	debris := []string{
		filepath.Join(root, ".staging", "snapshots", testSnap),
		filepath.Join(root, ".staging", "snapshots", "snap-crashed"),
		filepath.Join(root, ".staging", "volumes", cloneID),
	}
	for _, p := range debris {
		writeFile(t, filepath.Join(p, "half", "copied"), "debris")
	}
	// A retry replaces its own debris.
	must(t, d.Snapshot(testID, testSnap))
	sameTree(t, "snapshot made over debris", want, tree(t, filepath.Join(root, "snapshots", testSnap)))
	must(t, d.Create(cloneID, VolumeSpec{FromVolume: testID}))
	clone, _ := d.Path(cloneID)
	sameTree(t, "clone made over debris", want, tree(t, clone))

	// PurgeTrash removes the rest, but not a copy this process is making.
	running := filepath.Join(root, ".staging", "volumes", "vol-running")
	writeFile(t, filepath.Join(running, "f"), "being copied")
	if !d.stageBegin(running) {
		t.Fatal("stageBegin refused a free staging directory")
	}
	if d.stageBegin(running) {
		t.Error("stageBegin granted a staging directory twice")
	}
	must(t, d.PurgeTrash())
	if got := staged(t, root); !reflect.DeepEqual(got, []string{"vol-running"}) {
		t.Errorf(".staging after PurgeTrash holds %v, want only the running copy", got)
	}
	d.stageEnd(running)
	must(t, d.PurgeTrash())
	if got := staged(t, root); len(got) != 0 {
		t.Errorf(".staging after PurgeTrash holds %v", got)
	}
}

// Two calls making the same snapshot at once: one makes it, the other is
// refused, and the snapshot is whole.
func TestSnapshotConcurrent(t *testing.T) {
	d, root := newDir(t)
	vol := mustCreate(t, d, testID)
	fillVolume(t, vol)
	for i := range 50 {
		writeFile(t, filepath.Join(vol, "many", fmt.Sprint(i)), strings.Repeat("x", i))
	}
	want := tree(t, vol)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = d.Snapshot(testID, testSnap) })
	}
	wg.Wait()
	var ok int
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrExists):
			t.Errorf("concurrent Snapshot = %v, want nil or ErrExists", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent Snapshot calls succeeded, want 1", ok, len(errs))
	}
	sameTree(t, "snapshot", want, tree(t, filepath.Join(root, "snapshots", testSnap)))
	if got := staged(t, root); len(got) != 0 {
		t.Errorf(".staging holds %v", got)
	}
}

// Hostile names reach no path: every method refuses them with ErrInvalidName
// and the disk stays as it was.
func TestSnapshotInvalidNames(t *testing.T) {
	d, root := newDir(t)
	vol := mustCreate(t, d, testID)
	writeFile(t, filepath.Join(vol, "data"), "data")
	must(t, d.Snapshot(testID, testSnap))
	must(t, d.Create("vol-block2", VolumeSpec{Block: true, Bytes: 1 << 20}))
	parent := filepath.Dir(root)
	// Where "../x" would lead from volumes/ if it were used as a name.
	writeFile(t, filepath.Join(root, "x", BlockFile), "a file named like a block file, outside volumes/")
	before := tree(t, parent)
	perm := Permissions{Mode: 0o777, UID: -1, GID: -1}
	for _, tt := range invalidNames {
		t.Run(tt.name, func(t *testing.T) {
			ops := map[string]func() error{
				"Snapshot volume":      func() error { return d.Snapshot(tt.id, "snap-new") },
				"Snapshot snapshot":    func() error { return d.Snapshot(testID, tt.id) },
				"SnapshotExists":       func() error { _, err := d.SnapshotExists(tt.id); return err },
				"RemoveSnapshot":       func() error { return d.RemoveSnapshot(tt.id) },
				"Expand":               func() error { return d.Expand(tt.id, 2<<20) },
				"BlockPath":            func() error { _, err := d.BlockPath(tt.id); return err },
				"Create block":         func() error { return d.Create(tt.id, VolumeSpec{Block: true, Bytes: 1 << 20}) },
				"Create from snapshot": func() error { return d.Create("vol-new", VolumeSpec{FromSnapshot: tt.id, Perm: perm}) },
				"Create from volume":   func() error { return d.Create("vol-new", VolumeSpec{FromVolume: tt.id, Perm: perm}) },
				"Restore to bad name":  func() error { return d.Create(tt.id, VolumeSpec{FromSnapshot: testSnap, Perm: perm}) },
				"Clone to bad name":    func() error { return d.Create(tt.id, VolumeSpec{FromVolume: testID, Perm: perm}) },
				"Block restore to name": func() error {
					return d.Create(tt.id, VolumeSpec{FromVolume: "vol-block2", Block: true, Bytes: 2 << 20})
				},
			}
			if tt.id == "" {
				// An empty source means "no source", not a name.
				delete(ops, "Create from snapshot")
				delete(ops, "Create from volume")
			}
			for op, f := range ops {
				if err := f(); !errors.Is(err, ErrInvalidName) {
					t.Errorf("%s(%q) = %v, want ErrInvalidName", op, tt.id, err)
				}
			}
			sameTree(t, "disk", before, tree(t, parent))
		})
	}
}

// The restored volume's root keeps the snapshot's owner even when the
// requested permissions differ.
func TestRestoreKeepsRootOwner(t *testing.T) {
	d, _ := newDir(t)
	if err := d.Create(testID, VolumeSpec{Perm: Permissions{Mode: 0o2770, UID: 1500, GID: 1600}}); err != nil {
		t.Fatal(err)
	}
	vol, _ := d.Path(testID)
	must(t, unix.Chmod(vol, 0o2770))
	must(t, d.Snapshot(testID, testSnap))
	must(t, d.Create(restoreID, VolumeSpec{FromSnapshot: testSnap, Perm: Permissions{Mode: 0o777, UID: 0, GID: 0}}))
	restored, _ := d.Path(restoreID)
	fi, err := os.Lstat(restored)
	must(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	if st.Mode&07777 != 0o2770 || st.Uid != 1500 || st.Gid != 1600 {
		t.Errorf("restored root: mode %o owner %d:%d, want 2770 1500:1600", st.Mode&07777, st.Uid, st.Gid)
	}
}
