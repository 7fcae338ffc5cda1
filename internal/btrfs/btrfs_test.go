package btrfs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/testfs"
	"golang.org/x/sys/unix"
)

// openDir opens directory p for the test. The root directory's descriptor
// may stay open; descriptors inside subvolumes must be closed (closeFD)
// before those are deleted, or btrfs cannot drop them.
func openDir(t *testing.T, p string) int {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// withDir calls fn with directory p open, and closes it afterwards.
func withDir(t *testing.T, p string, fn func(fd int)) {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	fn(fd)
}

func mustID(t *testing.T, p string) uint64 {
	t.Helper()
	var id uint64
	withDir(t, p, func(fd int) {
		var err error
		if id, err = SubvolumeID(fd); err != nil {
			t.Fatal(err)
		}
	})
	return id
}

func isSubvolume(t *testing.T, p string) bool {
	t.Helper()
	var ok bool
	withDir(t, p, func(fd int) {
		var err error
		if ok, err = IsSubvolume(fd); err != nil {
			t.Fatal(err)
		}
	})
	return ok
}

func snapshot(t *testing.T, src, dir, name string, readOnly bool) error {
	t.Helper()
	var err error
	withDir(t, src, func(sfd int) {
		withDir(t, dir, func(dfd int) { err = Snapshot(sfd, dfd, name, readOnly) })
	})
	return err
}

func syncFS(t *testing.T, fd int) {
	t.Helper()
	if err := unix.Syncfs(fd); err != nil {
		t.Fatal(err)
	}
}

func TestSubvolumeQuotaSnapshotDelete(t *testing.T) {
	mnt := testfs.Mount(t, testfs.Btrfs, 256<<20)
	root := openDir(t, mnt)
	for range 2 { // enabling twice is harmless
		if err := EnableQuota(root); err != nil {
			t.Fatal(err)
		}
	}
	if err := CreateSubvolume(root, "vol"); err != nil {
		t.Fatal(err)
	}
	if err := CreateSubvolume(root, "vol"); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("second CreateSubvolume = %v, want EEXIST", err)
	}
	vol := filepath.Join(mnt, "vol")
	if !isSubvolume(t, vol) {
		t.Fatal("IsSubvolume(vol) = false")
	}
	if err := os.Mkdir(filepath.Join(mnt, "plain"), 0o755); err != nil {
		t.Fatal(err)
	}
	if isSubvolume(t, filepath.Join(mnt, "plain")) {
		t.Fatal("IsSubvolume(plain) = true")
	}
	id := mustID(t, vol)
	if id < 256 {
		t.Fatalf("subvolume ID %d", id)
	}
	if _, ok, err := Limit(root, id); ok || err != nil {
		t.Fatalf("Limit before SetLimit = %v, %v", ok, err)
	}
	if err := SetLimit(root, id, 8<<20); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := Limit(root, id); got != 8<<20 || !ok || err != nil {
		t.Fatalf("Limit = %d, %v, %v", got, ok, err)
	}
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i)
	}
	if err := os.WriteFile(filepath.Join(vol, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	syncFS(t, root)
	u, err := QgroupUsage(root, id)
	if err != nil {
		t.Fatal(err)
	}
	if u.Referenced < 4<<20 || u.Referenced > 4<<20+1<<20 {
		t.Errorf("referenced = %d after writing 4 MiB", u.Referenced)
	}

	// A nested subvolume and a read-only snapshot inside the volume, as a
	// workload could make them.
	withDir(t, vol, func(fd int) {
		if err := CreateSubvolume(fd, "nested"); err != nil {
			t.Fatal(err)
		}
	})
	if err := snapshot(t, filepath.Join(vol, "nested"), vol, "nested-ro", true); err != nil {
		t.Fatal(err)
	}
	kids, err := ChildSubvolumes(root, id)
	if err != nil || len(kids) != 2 {
		t.Fatalf("ChildSubvolumes = %v, %v; want two", kids, err)
	}

	snapDir := filepath.Join(mnt, "snaps")
	if err := os.Mkdir(snapDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := snapshot(t, vol, snapDir, "s1", true); err != nil {
		t.Fatal(err)
	}
	if err := snapshot(t, vol, snapDir, "s1", true); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("second Snapshot = %v, want EEXIST", err)
	}
	if err := os.WriteFile(filepath.Join(snapDir, "s1", "g"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write into read-only snapshot = %v, want EROFS", err)
	}
	snapID := mustID(t, filepath.Join(snapDir, "s1"))

	deleted, err := DeleteSubvolume(root, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 3 || deleted[2] != id {
		t.Fatalf("deleted %v, want two nested then %d", deleted, id)
	}
	if _, err := os.Lstat(vol); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("volume still present: %v", err)
	}
	if again, err := DeleteSubvolume(root, id); err != nil || len(again) != 0 {
		t.Fatalf("deleting again = %v, %v", again, err)
	}
	if _, err := DeleteSubvolume(root, snapID); err != nil {
		t.Fatalf("delete read-only snapshot: %v", err)
	}
	if err := Commit(root); err != nil {
		t.Fatal(err)
	}
	for _, d := range append(deleted, snapID) {
		waitGone(t, root, d)
		if err := DestroyQgroup(root, d); err != nil {
			t.Errorf("DestroyQgroup(%d): %v", d, err)
		}
	}
	groups, err := Qgroups(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append(deleted, snapID) {
		if slices.Contains(groups, d) {
			t.Errorf("quota group 0/%d still listed: %v", d, groups)
		}
	}
}

// waitGone waits until btrfs has dropped subvolume id.
func waitGone(t *testing.T, fd int, id uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := SubvolumeExists(fd, id)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("subvolume %d not dropped after 30s", id)
		}
		if err := Commit(fd); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestWriteBeyondLimitFails(t *testing.T) {
	mnt := testfs.Mount(t, testfs.Btrfs, 256<<20)
	root := openDir(t, mnt)
	if err := EnableQuota(root); err != nil {
		t.Fatal(err)
	}
	if err := CreateSubvolume(root, "vol"); err != nil {
		t.Fatal(err)
	}
	id := mustID(t, filepath.Join(mnt, "vol"))
	if err := SetLimit(root, id, 4<<20); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(mnt, "vol", "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var werr error
	for range 8 {
		if _, werr = f.Write(buf); werr != nil {
			break
		}
	}
	if werr == nil {
		werr = f.Sync()
	}
	if !errors.Is(werr, unix.EDQUOT) {
		t.Fatalf("writing 8 MiB into a 4 MiB subvolume: %v, want EDQUOT", werr)
	}
}

func TestCommitAndResize(t *testing.T) {
	mnt := testfs.Mount(t, testfs.Btrfs, 256<<20)
	root := openDir(t, mnt)
	if err := Commit(root); err != nil {
		t.Fatal(err)
	}
	if err := ResizeMax(root); err != nil {
		t.Fatal(err)
	}
	if ok, err := IsBtrfs(mnt); !ok || err != nil {
		t.Fatalf("IsBtrfs = %v, %v", ok, err)
	}
	if ok, err := IsBtrfs(t.TempDir()); ok || err != nil {
		t.Logf("temp dir is on btrfs: %v, %v", ok, err)
	}
}
