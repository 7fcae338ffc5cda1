// Package testfs makes real filesystems for tests: a sparse image file in a
// temporary directory, formatted and loop-mounted, and torn down when the
// test ends, also when it fails. It needs root and the mkfs tool of the
// filesystem; tests skip with the reason when either is missing.
package testfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Kind is a filesystem type with the mkfs options tests rely on.
type Kind string

const (
	// Btrfs is a btrfs filesystem (subvolumes, qgroups, snapshots, reflink).
	Btrfs Kind = "btrfs"
	// XFS is an XFS filesystem with reflink enabled.
	XFS Kind = "xfs"
	// Ext4 is an ext4 filesystem: no reflink, so copies are plain copies.
	Ext4 Kind = "ext4"
)

// minSize is what each mkfs accepts at least (XFS needs 300 MiB).
var minSize = map[Kind]int64{Btrfs: 128 << 20, XFS: 300 << 20, Ext4: 16 << 20}

func mkfsArgs(k Kind, image string) (string, []string) {
	switch k {
	case Btrfs:
		return "mkfs.btrfs", []string{"-q", "-f", image}
	case XFS:
		return "mkfs.xfs", []string{"-q", "-f", "-m", "reflink=1", image}
	default:
		return "mkfs.ext4", []string{"-q", "-F", image}
	}
}

// Mount makes a filesystem of kind k and size bytes (raised to what mkfs
// accepts) and returns its mount point. The filesystem is unmounted and its
// image removed in t.Cleanup.
func Mount(t testing.TB, k Kind, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("a loop-mounted %s filesystem needs root", k)
	}
	tool, _ := mkfsArgs(k, "")
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("%s not installed (apt-get install %s): %v", tool, pkgOf(k), err)
	}
	if size < minSize[k] {
		size = minSize[k]
	}
	dir := t.TempDir()
	image := filepath.Join(dir, "fs.img")
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(image)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		t.Fatal(err)
	}
	f.Close()
	_, args := mkfsArgs(k, image)
	run(t, tool, args...)
	run(t, "mount", "-o", "loop", image, mnt)
	// Cleanups run last-in first-out: this one runs before TempDir's
	// removal, so the image is unmounted (and its loop device freed)
	// before its directory goes.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			// A busy mount (a test left a file open) is detached lazily so
			// that the loop device is still released when it closes.
			t.Errorf("umount %s: %v: %s", mnt, err, out)
			_ = exec.Command("umount", "-l", mnt).Run()
		}
	})
	return mnt
}

func pkgOf(k Kind) string {
	switch k {
	case Btrfs:
		return "btrfs-progs"
	case XFS:
		return "xfsprogs"
	}
	return "e2fsprogs"
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}
