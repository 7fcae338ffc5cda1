package pool

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/btrfs"
	"github.com/dirvol/dirvol/internal/testfs"

	"golang.org/x/sys/unix"
)

const (
	btVol1    = "vol-b0000000000000000000000000000001"
	btVol2    = "vol-b0000000000000000000000000000002"
	btSnapID  = "snap-b000000000000000000000000000001"
	btSnapID2 = "snap-b000000000000000000000000000002"
)

var btPerm = Permissions{Mode: 0o777, UID: -1, GID: -1}

// newBtrfsPool makes a btrfs pool on a fresh filesystem of size bytes.
func newBtrfsPool(t *testing.T, size int64) (*Btrfs, string) {
	t.Helper()
	mnt := testfs.Mount(t, testfs.Btrfs, size)
	root := filepath.Join(mnt, "pool")
	b, err := NewBtrfs("bt", root)
	if err != nil {
		t.Fatalf("NewBtrfs: %v", err)
	}
	return b, root
}

func btCreate(t *testing.T, b *Btrfs, id string, spec VolumeSpec) string {
	t.Helper()
	if spec.Perm == (Permissions{}) {
		spec.Perm = btPerm
	}
	if err := b.Create(id, spec); err != nil {
		t.Fatalf("Create(%s, %+v): %v", id, spec, err)
	}
	p, err := b.Path(id)
	must(t, err)
	return p
}

// fillUntilError writes into file p in 1 MiB pieces until a write fails or
// max bytes are written; it returns the bytes written and the error.
func fillUntilError(t *testing.T, p string, max int64) (int64, error) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + 1) // not zeros, which btrfs might not store
	}
	var n int64
	for n < max {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			return n, err
		}
	}
	return n, f.Sync()
}

func isQuotaError(err error) bool {
	return errors.Is(err, unix.EDQUOT) || errors.Is(err, unix.ENOSPC)
}

// subvolumeID returns the subvolume ID of directory p.
func subvolumeID(t *testing.T, p string) uint64 {
	t.Helper()
	var id uint64
	must(t, withDirFD(p, func(fd int) (err error) {
		id, err = btrfs.SubvolumeID(fd)
		return err
	}))
	return id
}

func limitOf(t *testing.T, p string) (uint64, bool) {
	t.Helper()
	id := subvolumeID(t, p)
	var limit uint64
	var ok bool
	must(t, withDirFD(p, func(fd int) (err error) {
		limit, ok, err = btrfs.Limit(fd, id)
		return err
	}))
	return limit, ok
}

// waitQgroupsGone waits until btrfs has freed subvolumes ids and the pool
// has dropped their quota groups.
func waitQgroupsGone(t *testing.T, b *Btrfs, ids ...uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []uint64
		must(t, b.withRoot(func(fd int) error {
			if err := btrfs.Commit(fd); err != nil {
				return err
			}
			groups, err := btrfs.Qgroups(fd)
			for _, id := range ids {
				if slices.Contains(groups, id) {
					left = append(left, id)
				}
			}
			return err
		}))
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("quota groups %v still there after 30s", left)
		}
		must(t, b.dropUnfreed())
		time.Sleep(100 * time.Millisecond)
	}
}

func TestNewBtrfsOnOtherFilesystem(t *testing.T) {
	mnt := testfs.Mount(t, testfs.Ext4, 0)
	_, err := NewBtrfs("bt", filepath.Join(mnt, "pool"))
	if !errors.Is(err, ErrWrongFilesystem) || !strings.Contains(err.Error(), "ext2/3/4") {
		t.Fatalf("NewBtrfs on ext4 = %v, want ErrWrongFilesystem naming ext2/3/4", err)
	}
}

func TestBtrfsCreate(t *testing.T) {
	b, root := newBtrfsPool(t, 0)
	if b.Backend() != "btrfs" || !b.EnforcesSize() || b.Root() != root {
		t.Fatalf("Backend %q, EnforcesSize %v, Root %q", b.Backend(), b.EnforcesSize(), b.Root())
	}
	for _, d := range []string{"volumes", "snapshots", "archive", ".trash"} {
		if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	spec := VolumeSpec{Bytes: 8 << 20, Perm: Permissions{Mode: 0o2770, UID: 1000, GID: 2000}}
	for range 2 { // a second Create completes, and changes nothing
		p := btCreate(t, b, testID, spec)
		fi, err := os.Stat(p)
		must(t, err)
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != os.ModeDir|os.ModeSetgid|0o770 || st.Uid != 1000 || st.Gid != 2000 {
			t.Errorf("volume root %v uid %d gid %d, want drwxrws--- 1000:2000 (the mode with its setgid bit, as on a dir pool)", fi.Mode(), st.Uid, st.Gid)
		}
		if st.Ino != 256 {
			t.Errorf("volume root has inode %d: not a subvolume", st.Ino)
		}
		if limit, ok := limitOf(t, p); !ok || limit != 8<<20 {
			t.Errorf("limit %d (set %v), want %d", limit, ok, 8<<20)
		}
	}
	if err := b.Create(btVol2, VolumeSpec{Perm: btPerm}); err == nil {
		t.Error("Create without a size succeeded on a pool that enforces sizes")
	}
	if err := b.Create("../x", VolumeSpec{Bytes: 1 << 20, Perm: btPerm}); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Create(../x) = %v, want ErrInvalidName", err)
	}
	dirs, _, err := b.Scan()
	if err != nil || !slices.Equal(dirs, []string{testID}) {
		t.Errorf("Scan = %v, %v", dirs, err)
	}
}

func TestBtrfsWritePastSizeFails(t *testing.T) {
	b, _ := newBtrfsPool(t, 256<<20)
	p := btCreate(t, b, testID, VolumeSpec{Bytes: 16 << 20})
	n, err := fillUntilError(t, filepath.Join(p, "big"), 64<<20)
	if !isQuotaError(err) {
		t.Fatalf("writing 64 MiB into a 16 MiB volume: wrote %d bytes, error %v; want EDQUOT", n, err)
	}
	if n > 16<<20 {
		t.Errorf("wrote %d bytes into a 16 MiB volume", n)
	}
	if !errors.Is(err, unix.EDQUOT) {
		t.Logf("write failed with %v rather than EDQUOT", err)
	}
	// The neighbour is not limited by the full volume.
	p2 := btCreate(t, b, btVol2, VolumeSpec{Bytes: 16 << 20})
	if n, err := fillUntilError(t, filepath.Join(p2, "f"), 4<<20); err != nil {
		t.Fatalf("writing into another volume: %d bytes, %v", n, err)
	}
}

func TestBtrfsUsage(t *testing.T) {
	b, root := newBtrfsPool(t, 256<<20)
	p := btCreate(t, b, testID, VolumeSpec{Bytes: 64 << 20})
	const n = 10 << 20
	randomFile(t, filepath.Join(p, "data"), n, 1)
	must(t, syncFS(root))
	u, err := b.Usage(testID)
	must(t, err)
	if u.Bytes < n || u.Bytes > n+1<<20 {
		t.Errorf("Usage = %d bytes after writing %d", u.Bytes, n)
	}
	if u.Inodes != 0 {
		t.Errorf("Usage.Inodes = %d, want 0 (btrfs keeps no count)", u.Inodes)
	}
	if _, err := b.Usage(btVol2); !errors.Is(err, ErrNotFound) {
		t.Errorf("Usage of a missing volume = %v, want ErrNotFound", err)
	}
}

func TestBtrfsExpand(t *testing.T) {
	b, _ := newBtrfsPool(t, 256<<20)
	p := btCreate(t, b, testID, VolumeSpec{Bytes: 8 << 20})
	if _, err := fillUntilError(t, filepath.Join(p, "f"), 32<<20); !isQuotaError(err) {
		t.Fatalf("filling an 8 MiB volume: %v", err)
	}
	must(t, os.Remove(filepath.Join(p, "f")))
	must(t, b.Expand(testID, 32<<20))
	if limit, _ := limitOf(t, p); limit != 32<<20 {
		t.Fatalf("limit %d after Expand to 32 MiB", limit)
	}
	if n, err := fillUntilError(t, filepath.Join(p, "g"), 24<<20); err != nil {
		t.Fatalf("writing 24 MiB after expanding to 32 MiB: %d bytes, %v", n, err)
	}
	// Expand never lowers a limit.
	must(t, b.Expand(testID, 4<<20))
	if limit, _ := limitOf(t, p); limit != 32<<20 {
		t.Errorf("limit %d after Expand to less", limit)
	}
	if err := b.Expand(btVol2, 1<<30); !errors.Is(err, ErrNotFound) {
		t.Errorf("Expand of a missing volume = %v, want ErrNotFound", err)
	}
}

func checkSparseFile(t *testing.T, p string, size int64) {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o777 != 0o600 || st.Size != size {
		t.Errorf("%s: mode %o size %d, want a regular 0600 file of %d bytes", p, st.Mode, st.Size, size)
	}
	if st.Blocks*512 > 1<<20 {
		t.Errorf("%s has %d bytes allocated; want a sparse file", p, st.Blocks*512)
	}
}

func TestBtrfsBlockVolume(t *testing.T) {
	b, root := newBtrfsPool(t, 256<<20)
	p := btCreate(t, b, testID, VolumeSpec{Bytes: 64 << 20, Block: true})
	for range 2 {
		must(t, b.Create(testID, VolumeSpec{Bytes: 64 << 20, Block: true, Perm: btPerm}))
	}
	bp, err := b.BlockPath(testID)
	must(t, err)
	if bp != filepath.Join(p, BlockFile) {
		t.Errorf("BlockPath = %s", bp)
	}
	checkSparseFile(t, bp, 64<<20)
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o700 {
		t.Errorf("block volume directory mode %v, want 0700", fi.Mode())
	}
	if _, ok := limitOf(t, p); ok {
		t.Error("a block volume has a quota limit")
	}
	flags, err := getFlags(bp)
	must(t, err)
	if flags&fsNoCOWFlag == 0 {
		t.Error("block file is not NOCOW")
	}

	must(t, b.Expand(testID, 128<<20))
	checkSparseFile(t, bp, 128<<20)
	must(t, b.Expand(testID, 32<<20)) // never shrinks
	checkSparseFile(t, bp, 128<<20)

	// Data written through the file survives a snapshot and restore.
	f, err := os.OpenFile(bp, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("block data"), 100<<20)
	must(t, err)
	must(t, f.Close())
	must(t, b.Snapshot(testID, btSnapID))
	r := btCreate(t, b, btVol2, VolumeSpec{Bytes: 256 << 20, Block: true, FromSnapshot: btSnapID})
	rb := filepath.Join(r, BlockFile)
	checkSparseFile(t, rb, 256<<20)
	got := make([]byte, 10)
	rf, err := os.Open(rb)
	must(t, err)
	_, err = rf.ReadAt(got, 100<<20)
	must(t, err)
	must(t, rf.Close())
	if string(got) != "block data" {
		t.Errorf("restored block volume holds %q", got)
	}
	if _, ok := limitOf(t, r); ok {
		t.Error("a restored block volume has a quota limit")
	}
	must(t, b.Expand(btVol2, 300<<20))
	checkSparseFile(t, rb, 300<<20)
	must(t, syncFS(root))
}

func getFlags(p string) (uint32, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
}

// A filesystem volume whose workload left a file named like a block file
// is still expanded as a filesystem volume: the pool goes by its marker,
// not by content.
func TestBtrfsExpandIgnoresPlantedBlockFile(t *testing.T) {
	b, _ := newBtrfsPool(t, 0)
	p := btCreate(t, b, testID, VolumeSpec{Bytes: 8 << 20})
	writeFile(t, filepath.Join(p, BlockFile), "mine")
	must(t, b.Expand(testID, 16<<20))
	if fi, _ := os.Stat(filepath.Join(p, BlockFile)); fi.Size() != 4 {
		t.Errorf("planted %s grew to %d bytes", BlockFile, fi.Size())
	}
	if limit, _ := limitOf(t, p); limit != 16<<20 {
		t.Errorf("limit %d, want 16 MiB", limit)
	}
}

func TestBtrfsArchiveAndRetain(t *testing.T) {
	b, root := newBtrfsPool(t, 256<<20)
	p := btCreate(t, b, testID, VolumeSpec{Bytes: 8 << 20})
	writeFile(t, filepath.Join(p, "data"), "kept")
	must(t, b.Archive(testID, "ns_pvc_pv_time"))
	must(t, b.Archive(testID, "ns_pvc_pv_time")) // already done
	archived := filepath.Join(root, "archive", "ns_pvc_pv_time")
	if data, err := os.ReadFile(filepath.Join(archived, "data")); err != nil || string(data) != "kept" {
		t.Fatalf("archived data: %q, %v", data, err)
	}
	if limit, ok := limitOf(t, archived); !ok || limit != 8<<20 {
		t.Errorf("archived subvolume limit %d (%v)", limit, ok)
	}

	// A volume filled to its limit still takes its retain note.
	p2 := btCreate(t, b, btVol2, VolumeSpec{Bytes: 8 << 20})
	if _, err := fillUntilError(t, filepath.Join(p2, "fill"), 32<<20); !isQuotaError(err) {
		t.Fatalf("filling: %v", err)
	}
	must(t, syncFS(root))
	note := RetainNote{VolumeID: btVol2, Name: "pvc-1", CreatedAt: time.Now(), RetainedAt: time.Now()}
	if err := b.Retain(btVol2, note); err != nil {
		t.Fatalf("Retain of a full volume: %v", err)
	}
	if _, err := os.Stat(filepath.Join(p2, retainNoteName(btVol2))); err != nil {
		t.Errorf("retain note: %v", err)
	}
	if _, ok := limitOf(t, p2); ok {
		t.Log("the note fitted without lifting the limit")
	}
	_, retained, err := b.Scan()
	if err != nil || !slices.Equal(retained, []string{btVol2}) {
		t.Errorf("Scan retained = %v, %v", retained, err)
	}
}
