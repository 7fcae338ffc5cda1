package pool

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/internal/testfs"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"
)

// imageEnv is a directory for an image pool's file and mount point. Its
// cleanups unmount whatever the test mounted there, also when it fails,
// and then check that no loop device still holds a file in it.
type imageEnv struct {
	dir, image, mnt string
	deps            Deps
}

func newImageEnv(t *testing.T) *imageEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("image pools need root to loop-mount")
	}
	for _, tool := range []string{"mkfs.btrfs", "mount", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
	dir := t.TempDir()
	e := &imageEnv{
		dir:   dir,
		image: filepath.Join(dir, "images", "pool.img"),
		mnt:   filepath.Join(dir, "pools", "img"),
		deps:  Deps{Mounter: mount.New(""), Exec: utilexec.New(), Loops: loopdev.New()},
	}
	// Registered after TempDir, so these run before its removal: first
	// the unmounts, then the loop check.
	t.Cleanup(func() { checkNoLoopDevices(t, dir) })
	t.Cleanup(func() { e.unmountAll(t) })
	return e
}

func (e *imageEnv) spec(size int64) Spec {
	return Spec{Name: "img", Image: e.image, Size: size, Path: e.mnt, Backend: BackendBtrfs}
}

func (e *imageEnv) open(t *testing.T, size int64) (*Btrfs, error) {
	t.Helper()
	return openImage(context.Background(), e.spec(size), e.deps)
}

func (e *imageEnv) mustOpen(t *testing.T, size int64) *Btrfs {
	t.Helper()
	b, err := e.open(t, size)
	if err != nil {
		t.Fatalf("open image pool: %v", err)
	}
	return b
}

// unmountAll unmounts everything stacked at the mount point, as a driver
// stop followed by a node reboot would.
func (e *imageEnv) unmountAll(t *testing.T) {
	t.Helper()
	for range 10 {
		dev, err := mountedAt(e.deps.Mounter, e.mnt)
		if err != nil || dev == "" {
			return
		}
		if out, err := exec.Command("umount", e.mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", e.mnt, err, out)
			_ = exec.Command("umount", "-l", e.mnt).Run()
			return
		}
	}
}

// checkNoLoopDevices fails the test if a loop device still has a file
// under dir as its backing file. Detaching after an unmount can lag.
func checkNoLoopDevices(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := exec.Command("losetup", "-a").CombinedOutput()
		if err != nil {
			t.Errorf("losetup -a: %v: %s", err, out)
			return
		}
		var leaked []string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, dir+"/") {
				leaked = append(leaked, line)
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("loop devices left attached: %s", strings.Join(leaked, "; "))
			for _, l := range leaked {
				dev, _, _ := strings.Cut(l, ":")
				_ = exec.Command("losetup", "-d", dev).Run()
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func statfsOf(t *testing.T, p string) unix.Statfs_t {
	t.Helper()
	var st unix.Statfs_t
	must(t, unix.Statfs(p, &st))
	return st
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	must(t, err)
	return fi.Size()
}

// An image pool is created and formatted at the first start, and found
// again, never formatted, at the next: whether the image is still mounted
// (a driver restart) or not (a node reboot).
func TestImagePoolCreateAndReattach(t *testing.T) {
	e := newImageEnv(t)
	b := e.mustOpen(t, 256<<20)
	if b.Root() != e.mnt || b.Backend() != BackendBtrfs || !b.EnforcesSize() {
		t.Fatalf("pool at %s backend %s", b.Root(), b.Backend())
	}
	if st := statfsOf(t, e.mnt); st.Type != unix.BTRFS_SUPER_MAGIC {
		t.Fatalf("%s is not btrfs: %#x", e.mnt, st.Type)
	}
	if fileSize(t, e.image) != 256<<20 {
		t.Errorf("image is %d bytes", fileSize(t, e.image))
	}
	if _, err := os.Stat(e.image + ".dirvol-new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary image left behind: %v", err)
	}
	p := btCreate(t, b, testID, VolumeSpec{Bytes: 16 << 20})
	writeFile(t, filepath.Join(p, "data"), "survives restarts")
	if _, err := fillUntilError(t, filepath.Join(p, "fill"), 64<<20); !isQuotaError(err) {
		t.Errorf("writing past the size in an image pool: %v", err)
	}
	must(t, os.Remove(filepath.Join(p, "fill")))
	must(t, syncFS(e.mnt))

	check := func(what string, b *Btrfs) {
		t.Helper()
		p, err := b.Path(testID)
		must(t, err)
		if data, err := os.ReadFile(filepath.Join(p, "data")); err != nil || string(data) != "survives restarts" {
			t.Errorf("%s: data %q, %v", what, data, err)
		}
		dev, err := mountedAt(e.deps.Mounter, e.mnt)
		must(t, err)
		mps, err := e.deps.Mounter.List()
		must(t, err)
		n := 0
		for _, mp := range mps {
			if mp.Path == e.mnt {
				n++
			}
		}
		if n != 1 || !strings.HasPrefix(dev, "/dev/loop") {
			t.Errorf("%s: %d mounts at %s, top one %s", what, n, e.mnt, dev)
		}
	}
	check("restart with the image mounted", e.mustOpen(t, 256<<20))

	e.unmountAll(t)
	check("start with the image not mounted", e.mustOpen(t, 256<<20))
}

// A start interrupted after creating the image's temporary file but before
// formatting it leaves that file; the next start replaces it.
func TestImagePoolInterruptedCreate(t *testing.T) {
	e := newImageEnv(t)
	must(t, os.MkdirAll(filepath.Dir(e.image), 0o700))
	writeFile(t, e.image+".dirvol-new", "half made")
	e.mustOpen(t, 256<<20)
	if _, err := os.Stat(e.image + ".dirvol-new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary image left behind: %v", err)
	}
}

func TestImagePoolGrows(t *testing.T) {
	e := newImageEnv(t)
	e.mustOpen(t, 256<<20)
	before := statfsOf(t, e.mnt)

	// Grown while mounted (a restart with a larger size=)...
	e.mustOpen(t, 384<<20)
	if fileSize(t, e.image) != 384<<20 {
		t.Errorf("image is %d bytes after growing to 384 MiB", fileSize(t, e.image))
	}
	mid := statfsOf(t, e.mnt)
	if mid.Blocks*uint64(mid.Bsize) <= before.Blocks*uint64(before.Bsize) {
		t.Errorf("filesystem did not grow: %d -> %d blocks", before.Blocks, mid.Blocks)
	}

	// ...and while not mounted.
	e.unmountAll(t)
	e.mustOpen(t, 512<<20)
	after := statfsOf(t, e.mnt)
	if fileSize(t, e.image) != 512<<20 || after.Blocks <= mid.Blocks {
		t.Errorf("image %d bytes, filesystem %d -> %d blocks", fileSize(t, e.image), mid.Blocks, after.Blocks)
	}
}

func TestImagePoolRefusesToShrink(t *testing.T) {
	e := newImageEnv(t)
	e.mustOpen(t, 256<<20)
	for _, mounted := range []bool{true, false} {
		if !mounted {
			e.unmountAll(t)
		}
		_, err := e.open(t, 200<<20)
		if !errors.Is(err, ErrImageShrink) || !strings.Contains(err.Error(), "268435456") {
			t.Errorf("mounted=%v: shrinking = %v, want ErrImageShrink giving the image's size", mounted, err)
		}
		if fileSize(t, e.image) != 256<<20 {
			t.Errorf("image is now %d bytes", fileSize(t, e.image))
		}
	}
}

// fingerprint identifies a file's state: size, modification time and the
// first 2 MiB, where any format would write its superblock.
func fingerprint(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	fi, err := f.Stat()
	must(t, err)
	buf := make([]byte, 2<<20)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d %s %x", fi.Size(), fi.ModTime(), sha256.Sum256(buf[:n]))
}

// An image that holds anything but btrfs is never formatted.
func TestImagePoolRefusesForeignImages(t *testing.T) {
	e := newImageEnv(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	must(t, os.MkdirAll(filepath.Dir(e.image), 0o700))

	// An ext4 filesystem.
	f, err := os.Create(e.image)
	must(t, err)
	must(t, f.Truncate(256<<20))
	must(t, f.Close())
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", e.image).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	before := fingerprint(t, e.image)
	_, err = e.open(t, 256<<20)
	if !errors.Is(err, ErrWrongFilesystem) || !strings.Contains(err.Error(), "ext4 filesystem") {
		t.Errorf("opening an ext4 image = %v, want ErrWrongFilesystem naming ext4", err)
	}
	if fingerprint(t, e.image) != before {
		t.Error("the ext4 image changed")
	}

	// Data without any signature.
	data := bytes.Repeat([]byte("not a filesystem "), 1<<16)
	must(t, os.WriteFile(e.image, data, 0o600))
	must(t, os.Truncate(e.image, 256<<20))
	before = fingerprint(t, e.image)
	if _, err := e.open(t, 256<<20); !errors.Is(err, ErrWrongFilesystem) {
		t.Errorf("opening an image holding data = %v, want ErrWrongFilesystem", err)
	}
	if fingerprint(t, e.image) != before {
		t.Error("the image holding data changed")
	}

	// A directory.
	must(t, os.Remove(e.image))
	must(t, os.Mkdir(e.image, 0o700))
	if _, err := e.open(t, 256<<20); !errors.Is(err, ErrWrongFilesystem) {
		t.Errorf("opening a directory as an image = %v, want ErrWrongFilesystem", err)
	}
}

// An image of zeroes (say, made by truncate) holds nothing to lose and is
// formatted, and grown to size=.
func TestImagePoolFormatsEmptyFile(t *testing.T) {
	e := newImageEnv(t)
	must(t, os.MkdirAll(filepath.Dir(e.image), 0o700))
	f, err := os.Create(e.image)
	must(t, err)
	_, err = f.Write(make([]byte, 1<<20)) // zeroes, written: not a hole
	must(t, err)
	must(t, f.Truncate(200<<20))
	must(t, f.Close())
	b := e.mustOpen(t, 256<<20)
	btCreate(t, b, testID, VolumeSpec{Bytes: 1 << 20})
	if fileSize(t, e.image) != 256<<20 {
		t.Errorf("image is %d bytes", fileSize(t, e.image))
	}
}

// Something else mounted where the image pool goes is an error, not a
// second mount on top.
func TestImagePoolMountPointTaken(t *testing.T) {
	e := newImageEnv(t)
	other := Spec{Name: "other", Image: filepath.Join(e.dir, "other.img"), Size: 256 << 20, Path: e.mnt}
	if _, err := openImage(context.Background(), other, e.deps); err != nil {
		t.Fatal(err)
	}
	_, err := e.open(t, 256<<20)
	if err == nil || !strings.Contains(err.Error(), "not this image") {
		t.Errorf("open with another image mounted at the mount point = %v", err)
	}
	if _, statErr := os.Stat(e.image); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("image was created anyway: %v", statErr)
	}
}

func TestAllZero(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		write func(f *os.File) error
		want  bool
	}{
		{"empty", func(*os.File) error { return nil }, true},
		{"hole", func(f *os.File) error { return f.Truncate(1 << 30) }, true},
		{"written zeroes", func(f *os.File) error { _, err := f.Write(make([]byte, 3<<20)); return err }, true},
		{"one byte at the end", func(f *os.File) error { _, err := f.WriteAt([]byte{1}, 5<<20); return err }, false},
		{"one byte at the start", func(f *os.File) error { _, err := f.Write([]byte{1}); return err }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			f, err := os.Create(p)
			must(t, err)
			must(t, tc.write(f))
			must(t, f.Close())
			got, err := allZero(p)
			if err != nil || got != tc.want {
				t.Errorf("allZero = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// An image on a btrfs host filesystem is made NOCOW, so that the
// filesystem inside it does not fragment the file with every write.
func TestImagePoolOnBtrfsHost(t *testing.T) {
	host := testfs.Mount(t, testfs.Btrfs, 512<<20) // torn down after the pool
	e := newImageEnv(t)
	e.image = filepath.Join(host, "images", "pool.img")
	b := e.mustOpen(t, 256<<20)
	btCreate(t, b, testID, VolumeSpec{Bytes: 1 << 20})
	flags, err := getFlags(e.image)
	must(t, err)
	if flags&fsNoCOWFlag == 0 {
		t.Errorf("image on btrfs has flags %#x, want NOCOW", flags)
	}
	e.unmountAll(t)
	checkNoLoopDevices(t, host)
}
