package pool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The smallest image pool the spec accepts, 128Mi, starts and enforces
// sizes: btrfs resizes to no less than 256 MiB, and a filesystem that
// already fills its image needs no resize at all.
func TestImagePoolSmallestSize(t *testing.T) {
	e := newImageEnv(t)
	b := e.mustOpen(t, minImageSize)
	if !b.EnforcesSize() {
		t.Fatalf("EnforcesSize false: %v", b.SizeProblem())
	}
	p := btCreate(t, b, testID, VolumeSpec{Bytes: 16 << 20})
	if _, err := fillUntilError(t, filepath.Join(p, "fill"), 64<<20); !isQuotaError(err) {
		t.Errorf("writing past the size in a 128Mi image pool: %v", err)
	}
	must(t, b.Remove(testID))
	// And again, found mounted, and found unmounted.
	e.mustOpen(t, minImageSize)
	e.unmountAll(t)
	e.mustOpen(t, minImageSize)
}

// A start that fails after mounting the image unmounts it again: growing a
// 128Mi image to less than the 256 MiB btrfs can resize to fails, says what
// to do, and leaves nothing mounted (the env's cleanup also checks that no
// loop device holds the image).
func TestImagePoolFailedStartUnmounts(t *testing.T) {
	e := newImageEnv(t)
	e.mustOpen(t, minImageSize)
	e.unmountAll(t)
	_, err := e.open(t, 200<<20)
	if !errors.Is(err, ErrWrongFilesystem) || !containsAll(err.Error(), "256Mi", "size=") {
		t.Errorf("growing to 200Mi = %v, want ErrWrongFilesystem asking for size= of 256Mi or more", err)
	}
	if dev, err := mountedAt(e.deps.Mounter, e.mnt); err != nil || dev != "" {
		t.Errorf("after a failed start, %q is mounted at %s (%v)", dev, e.mnt, err)
	}
	b := e.mustOpen(t, 256<<20) // the way out the message gives
	btCreate(t, b, testID, VolumeSpec{Bytes: 1 << 20})
}

// With its image unmounted under it, an image pool reports no space, not
// that of the filesystem under the mount point, and says it is not mounted
// where it is asked whether it is usable; its volumes are out of reach,
// not missing.
func TestImagePoolNotMounted(t *testing.T) {
	e := newImageEnv(t)
	b := e.mustOpen(t, 256<<20)
	btCreate(t, b, testID, VolumeSpec{Bytes: 1 << 20})
	if fs, err := b.Stat(); err != nil || fs.TotalBytes == 0 {
		t.Fatalf("mounted: Stat = %+v, %v", fs, err)
	}
	e.unmountAll(t)

	if fs, err := b.Stat(); err != nil || fs != (FS{}) {
		t.Errorf("not mounted: Stat = %+v, %v; want no space", fs, err)
	}
	if err := b.Writable(); !errors.Is(err, ErrNotMounted) {
		t.Errorf("not mounted: Writable = %v, want ErrNotMounted", err)
	}
	if ok, err := b.Exists(testID); !errors.Is(err, ErrNotMounted) {
		t.Errorf("not mounted: Exists = %v, %v; want ErrNotMounted", ok, err)
	}
	if err := b.Check(context.Background()); !errors.Is(err, ErrNotMounted) {
		t.Errorf("not mounted: Check = %v, want ErrNotMounted", err)
	}
	if entries, _ := os.ReadDir(e.mnt); len(entries) != 0 {
		t.Errorf("the mount point got entries: %v", entries)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
