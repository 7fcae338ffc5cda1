package pool

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func statBlock(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	return st
}

func checkBlockFile(t *testing.T, what, p string, size int64) {
	t.Helper()
	st := statBlock(t, p)
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&07777 != 0o600 {
		t.Errorf("%s: mode %o, want a regular file of mode 0600", what, st.Mode)
	}
	if st.Size != size {
		t.Errorf("%s: %d bytes, want %d", what, st.Size, size)
	}
}

func TestBlockVolume(t *testing.T) {
	const size = 1 << 30
	for _, k := range copyKinds {
		t.Run(string(k), func(t *testing.T) {
			d, root := newDirOn(t, k)
			spec := VolumeSpec{Block: true, Bytes: size, Perm: Permissions{Mode: 0o777, UID: 1000, GID: 1000}}
			for attempt := range 2 {
				if err := d.Create(testID, spec); err != nil {
					t.Fatalf("Create #%d: %v", attempt+1, err)
				}
			}
			dir, _ := d.Path(testID)
			if got := entries(t, dir); len(got) != 1 || got[0] != BlockFile {
				t.Errorf("block volume directory holds %v, want only %s", got, BlockFile)
			}
			if st := statBlock(t, dir); st.Mode&07777 != 0o700 || st.Uid != 0 {
				t.Errorf("block volume directory: mode %o owner %d, want 0700 root (spec.Perm does not apply)", st.Mode&07777, st.Uid)
			}
			if _, err := unix.Getxattr(dir, blockMarker, nil); err != nil {
				t.Errorf("block volume directory has no %s: %v", blockMarker, err)
			}
			p, err := d.BlockPath(testID)
			if err != nil || p != filepath.Join(dir, BlockFile) {
				t.Fatalf("BlockPath = %q, %v", p, err)
			}
			checkBlockFile(t, "new block file", p, size)
			if st := statBlock(t, p); st.Blocks != 0 {
				t.Errorf("new block file has %d blocks allocated, want a sparse file", st.Blocks)
			}

			// Data written through the "device" survives a snapshot,
			// restore and clone.
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			must(t, err)
			payload := bytes.Repeat([]byte("block data "), 1000)
			_, err = f.WriteAt(payload, 300<<20)
			must(t, err)
			must(t, f.Close())

			// Expand grows the file and never shrinks it.
			must(t, d.Expand(testID, 2*size))
			checkBlockFile(t, "expanded block file", p, 2*size)
			must(t, d.Expand(testID, size))
			checkBlockFile(t, "block file after a smaller Expand", p, 2*size)

			free := available(t, d)
			must(t, d.Snapshot(testID, testSnap))
			must(t, d.Create(restoreID, VolumeSpec{Block: true, Bytes: 3 * size, FromSnapshot: testSnap}))
			must(t, d.Create(cloneID, VolumeSpec{Block: true, Bytes: 2 * size, FromVolume: testID}))
			used := free - available(t, d)
			for id, want := range map[string]int64{restoreID: 3 * size, cloneID: 2 * size} {
				bp, err := d.BlockPath(id)
				must(t, err)
				checkBlockFile(t, id, bp, want)
				got := make([]byte, len(payload))
				f, err := os.Open(bp)
				must(t, err)
				_, err = f.ReadAt(got, 300<<20)
				must(t, err)
				must(t, f.Close())
				if !bytes.Equal(got, payload) {
					t.Errorf("%s: data not copied", id)
				}
				if st := statBlock(t, bp); st.Blocks*512 > 1<<20 {
					t.Errorf("%s: %d KiB allocated, want the copy sparse", id, st.Blocks/2)
				}
			}
			checkBlockFile(t, "snapshot's block file", filepath.Join(root, "snapshots", testSnap, BlockFile), 2*size)
			// Three copies of 12 KB of data: sparse either way, shared
			// with reflink.
			if used > 4<<20 {
				t.Errorf("snapshot, restore and clone of a sparse block file used %d KiB", used>>10)
			}
		})
	}
}

// Expand of a directory volume on a dir pool changes nothing: sizes are
// reserved by the volume core, not enforced here.
func TestExpandDirectoryVolume(t *testing.T) {
	d, root := newDir(t)
	vol := mustCreate(t, d, testID)
	fillVolume(t, vol)
	// A workload's file named like a block file, among others, is data.
	writeFile(t, filepath.Join(vol, BlockFile), "workload data")
	mustCreate(t, d, "vol-empty")
	// Volumes whose only entry has the block file's name: without the
	// block marker they are directory volumes, and nothing is opened (a
	// FIFO opened for writing would block).
	only := map[string]func(p string){
		"vol-only-file":     func(p string) { writeFile(t, p, "looks like a block file, has no marker") },
		"vol-only-dir":      func(p string) { must(t, os.Mkdir(p, 0o755)) },
		"vol-only-fifo":     func(p string) { must(t, unix.Mkfifo(p, 0o666)) },
		"vol-only-device":   func(p string) { must(t, unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))) },
		"vol-only-link":     func(p string) { must(t, os.Symlink("/etc/passwd", p)) },
		"vol-only-hardlink": func(p string) { must(t, os.Link(filepath.Join(vol, BlockFile), p)) },
	}
	ids := []string{testID, "vol-empty"}
	for id, plant := range only {
		plant(filepath.Join(mustCreate(t, d, id), BlockFile))
		ids = append(ids, id)
	}
	before := tree(t, root)
	for _, id := range ids {
		if err := d.Expand(id, 10<<30); err != nil {
			t.Errorf("Expand(%s): %v", id, err)
		}
	}
	sameTree(t, "pool after Expand of directory volumes", before, tree(t, root))
	if err := d.Expand("vol-missing", 1<<30); !errors.Is(err, ErrNotFound) {
		t.Errorf("Expand of a missing volume = %v, want ErrNotFound", err)
	}
}

func TestBlockPathRefuses(t *testing.T) {
	d, root := newDir(t)
	vol := mustCreate(t, d, testID)
	must(t, os.Symlink("/etc/passwd", filepath.Join(vol, BlockFile)))
	mustCreate(t, d, "vol-plain")
	before := tree(t, root)
	for id, want := range map[string]error{"vol-missing": ErrNotFound, "vol-plain": ErrNotFound, testID: nil} {
		p, err := d.BlockPath(id)
		if err == nil || (want != nil && !errors.Is(err, want)) {
			t.Errorf("BlockPath(%s) = %q, %v; want an error (%v)", id, p, err, want)
		}
	}
	// Expand does not follow the link either.
	if err := d.Expand(testID, 1<<40); err != nil {
		t.Errorf("Expand of a directory volume holding a link: %v", err)
	}
	sameTree(t, "pool", before, tree(t, root))
	if err := d.Create("vol-bad-size", VolumeSpec{Block: true}); err == nil {
		t.Error("Create of a block volume without a size succeeded")
	}
}

// A create interrupted after its mkdir is completed by the retry.
func TestCreateBlockCompletesInterrupted(t *testing.T) {
	d, _ := newDir(t)
	dir, _ := d.Path(testID)
	must(t, os.Mkdir(dir, 0o755)) // a crash after mkdir
	must(t, d.Create(testID, VolumeSpec{Block: true, Bytes: 1 << 20}))
	checkBlockFile(t, "block file", filepath.Join(dir, BlockFile), 1<<20)
	if st := statBlock(t, dir); st.Mode&07777 != 0o700 {
		t.Errorf("directory mode %o, want 0700", st.Mode&07777)
	}
}

// On a filesystem without extended attributes (ramfs) block volumes carry no
// marker, and Expand tells them apart by content: BlockFile, a regular file
// with one link, and nothing else.
func TestBlockVolumeWithoutXattrs(t *testing.T) {
	root := t.TempDir()
	if err := unix.Mount("none", root, "ramfs", 0, ""); err != nil {
		t.Skipf("cannot mount ramfs: %v", err)
	}
	t.Cleanup(func() { must(t, unix.Unmount(root, 0)) })
	d, err := NewDir("default", filepath.Join(root, "pool"))
	must(t, err)
	must(t, d.Create(testID, VolumeSpec{Block: true, Bytes: 1 << 20}))
	p, err := d.BlockPath(testID)
	must(t, err)
	must(t, d.Expand(testID, 2<<20))
	checkBlockFile(t, "expanded block file", p, 2<<20)

	vol := mustCreate(t, d, "vol-dir")
	writeFile(t, filepath.Join(vol, BlockFile), "data")
	writeFile(t, filepath.Join(vol, "other"), "data")
	fifo := mustCreate(t, d, "vol-fifo")
	must(t, unix.Mkfifo(filepath.Join(fifo, BlockFile), 0o666))
	before := tree(t, d.Root())
	for _, id := range []string{"vol-dir", "vol-fifo"} {
		if err := d.Expand(id, 1<<30); err != nil {
			t.Errorf("Expand(%s): %v", id, err)
		}
	}
	sameTree(t, "pool after Expand of directory volumes", before, tree(t, d.Root()))
}
