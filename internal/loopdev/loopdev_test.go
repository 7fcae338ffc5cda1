package loopdev

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tempRoot holds every t.TempDir of this package (TestMain points TMPDIR at
// it), so that the leak check at the end finds the devices of these tests
// and no others.
var tempRoot string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	root, err := os.MkdirTemp("", "loopdev-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tempRoot = root
	defer os.RemoveAll(root)
	if err := os.Setenv("TMPDIR", root); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if os.Geteuid() != 0 {
		return code
	}
	// A detach the kernel deferred completes at the close of whoever had
	// the device open; give it a moment.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		left, err := under(root)
		if err != nil || !slices.ContainsFunc(left, func(d Device) bool { return d.Autoclear }) {
			break
		}
	}
	left, err := under(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "leak check:", err)
		return 1
	}
	for _, d := range left {
		fmt.Fprintf(os.Stderr, "LEAK: %s is still attached to %s\n", d.Path, d.BackingFile)
		_ = New().Detach(d.Path)
	}
	if len(left) > 0 {
		return 1
	}
	return code
}

// under lists the loop devices whose backing file is under dir.
func under(dir string) ([]Device, error) {
	all, err := New().List()
	if err != nil {
		return nil, err
	}
	var out []Device
	for _, d := range all {
		if strings.HasPrefix(d.BackingFile, dir+"/") {
			out = append(out, d)
		}
	}
	return out, nil
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	if _, err := os.Stat(filepath.Join(hostDevDir, loopControl)); err != nil {
		t.Skipf("no loop devices here: %v", err)
	}
}

// sparse makes a sparse file of size bytes.
func sparse(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

// attach attaches file and detaches it when the test ends, also on failure.
func attach(t *testing.T, l *Loops, file string, opts Options) Device {
	t.Helper()
	d, err := l.Attach(file, opts)
	if err != nil {
		t.Fatalf("Attach(%s): %v", file, err)
	}
	t.Cleanup(func() { detach(t, l, d.Path) })
	return d
}

// detach detaches the device at path and waits until it is gone. Another
// program scanning loop devices (losetup, mount -o loop, in tests of other
// packages running meanwhile) may hold it open for a moment, which defers
// the detach to its close.
func detach(t *testing.T, l *Loops, path string) {
	t.Helper()
	err := l.Detach(path)
	if err != nil && !errors.Is(err, ErrDeferred) {
		t.Errorf("Detach(%s): %v", path, err)
		return
	}
	waitGone(t, path)
}

// waitGone waits until the device at path is detached, 10s at most.
func waitGone(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); bound(filepath.Base(path)); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("%s is still attached 10s after it was detached", path)
			return
		}
	}
}

func paths(ds []Device) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Path)
	}
	return out
}

func TestAttachFindDetach(t *testing.T) {
	needRoot(t)
	l := New()
	dir := t.TempDir()
	file := sparse(t, dir, "vol.img", 4<<20)
	d, err := l.Attach(file, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Detach(d.Path) //nolint:errcheck // already detached unless the test failed
	if d.BackingFile != file || d.ReadOnly || d.Autoclear {
		t.Fatalf("Attach() = %+v, want a read-write device of %s without autoclear", d, file)
	}
	if size, err := l.Size(d.Path); err != nil || size != 4<<20 {
		t.Fatalf("Size() = %d, %v; want %d", size, err, 4<<20)
	}

	// Found by the file's path, by a symbolic link to it, and by its node.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, link} {
		found, err := l.Find(p)
		if err != nil || len(found) != 1 || found[0].Path != d.Path || found[0].BackingFile != file {
			t.Fatalf("Find(%s) = %+v, %v; want [%s]", p, found, err, d.Path)
		}
	}
	at, ok, err := l.At(d.Path)
	if err != nil || !ok || at.Path != d.Path {
		t.Fatalf("At(%s) = %+v, %t, %v", d.Path, at, ok, err)
	}

	// What is written to the device is in the file.
	pattern := bytes.Repeat([]byte("dirvol"), 1000)
	writeAt(t, d.Path, pattern, 1<<20)
	got := make([]byte, len(pattern))
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, pattern) {
		t.Fatalf("file does not hold what was written to %s (%v)", d.Path, err)
	}

	detach(t, l, d.Path)
	if found, err := l.Find(file); err != nil || len(found) != 0 {
		t.Fatalf("Find after Detach = %v, %v; want none", paths(found), err)
	}
	if _, ok, err := l.At(d.Path); ok || err != nil {
		t.Fatalf("At(%s) after Detach = %t, %v; want not bound", d.Path, ok, err)
	}
	if err := l.Detach(d.Path); err != nil {
		t.Fatalf("second Detach: %v, want nil", err)
	}
}

func writeAt(t *testing.T, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestAttachReadOnly(t *testing.T) {
	needRoot(t)
	l := New()
	file := sparse(t, t.TempDir(), "ro.img", 1<<20)
	d := attach(t, l, file, Options{ReadOnly: true})
	if !d.ReadOnly {
		t.Fatalf("Attach() = %+v, want ReadOnly", d)
	}
	if found, err := l.Find(file); err != nil || len(found) != 1 || !found[0].ReadOnly {
		t.Fatalf("Find() = %+v, %v; want one read-only device", found, err)
	}
	f, err := os.OpenFile(d.Path, os.O_RDWR, 0)
	if err == nil {
		_, err = f.WriteAt([]byte("x"), 0)
		if err == nil {
			err = f.Sync()
		}
		f.Close()
	}
	if err == nil {
		t.Fatal("writing to a read-only loop device succeeded")
	}
}

func TestAttachDirectIO(t *testing.T) {
	needRoot(t)
	l := New()
	file := sparse(t, t.TempDir(), "dio.img", 1<<20)
	d := attach(t, l, file, Options{DirectIO: true})
	found, err := l.Find(file)
	if err != nil || len(found) != 1 || found[0].DirectIO != d.DirectIO {
		t.Fatalf("Find() = %+v, %v; want DirectIO=%t as Attach reported", found, err, d.DirectIO)
	}
	t.Logf("direct I/O on %s: %t", filepath.Dir(file), d.DirectIO)
	writeAt(t, d.Path, bytes.Repeat([]byte{7}, 4096), 0)
}

func TestAttachNotRegular(t *testing.T) {
	needRoot(t)
	l := New()
	dir := t.TempDir()
	if _, err := l.Attach(dir, Options{}); err == nil {
		t.Fatal("Attach(directory) succeeded")
	}
	if _, err := l.Attach(filepath.Join(dir, "missing"), Options{}); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Attach(missing) = %v, want ENOENT", err)
	}
}

func TestRefresh(t *testing.T) {
	needRoot(t)
	l := New()
	file := sparse(t, t.TempDir(), "grow.img", 1<<20)
	d := attach(t, l, file, Options{})
	if err := os.Truncate(file, 3<<20); err != nil {
		t.Fatal(err)
	}
	if size, _ := l.Size(d.Path); size != 1<<20 {
		t.Fatalf("Size before Refresh = %d, want the old %d", size, 1<<20)
	}
	size, err := l.Refresh(d.Path)
	if err != nil || size != 3<<20 {
		t.Fatalf("Refresh() = %d, %v; want %d", size, err, 3<<20)
	}
	// The new space is usable.
	writeAt(t, d.Path, []byte("end"), 3<<20-3)
}

func TestDetachClaimedIsBusy(t *testing.T) {
	needRoot(t)
	l := New()
	file := sparse(t, t.TempDir(), "claimed.img", 1<<20)
	d := attach(t, l, file, Options{})
	// An O_EXCL open claims a block device as a mounted filesystem does.
	fd, err := unix.Open(d.Path, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = l.Detach(d.Path)
	unix.Close(fd)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("Detach of a claimed device = %v, want ErrBusy", err)
	}
	if found, _ := l.Find(file); len(found) != 1 || found[0].Autoclear {
		t.Fatalf("device after a refused Detach: %+v, want still attached, no autoclear", found)
	}
}

func TestDetachOpenIsDeferred(t *testing.T) {
	needRoot(t)
	l := New()
	file := sparse(t, t.TempDir(), "open.img", 1<<20)
	d, err := l.Attach(file, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(d.Path)
	if err != nil {
		_ = l.Detach(d.Path)
		t.Fatal(err)
	}
	err = l.Detach(d.Path)
	if errors.Is(err, ErrDeferred) {
		if found, _ := l.Find(file); len(found) != 1 || !found[0].Autoclear {
			t.Errorf("device open elsewhere after Detach: %+v, want attached with autoclear", found)
		}
	} else if err != nil {
		t.Errorf("Detach of an open device = %v, want ErrDeferred", err)
	}
	f.Close()
	waitGone(t, d.Path)
	if found, err := l.Find(file); err != nil || len(found) != 0 {
		t.Fatalf("after the last close: %v, %v; want detached", paths(found), err)
	}
}

func TestDeletedBackingFile(t *testing.T) {
	needRoot(t)
	l := New()
	dir := t.TempDir()
	file := sparse(t, dir, "gone.img", 1<<20)
	d := attach(t, l, file, Options{})
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	left, err := under(dir)
	if err != nil || len(left) != 1 || left[0].Path != d.Path || !left[0].Deleted || left[0].BackingFile != file {
		t.Fatalf("List() of a device whose file was removed = %+v, %v; want %s of %s, deleted", left, err, d.Path, file)
	}
	if found, err := l.Find(file); err != nil || len(found) != 0 {
		t.Fatalf("Find(removed file) = %v, %v; want none", paths(found), err)
	}
}

func TestNotLoop(t *testing.T) {
	needRoot(t)
	l := New()
	file := sparse(t, t.TempDir(), "plain", 1)
	for _, p := range []string{"/dev/null", file, "/dev/loop", "loop0", "/tmp/loop0"} {
		if err := l.Detach(p); !errors.Is(err, ErrNotLoop) {
			t.Errorf("Detach(%s) = %v, want ErrNotLoop", p, err)
		}
	}
	for _, p := range []string{"/dev/null", file, filepath.Join(file, "missing")} {
		if _, ok, err := l.At(p); ok {
			t.Errorf("At(%s) = ok, %v; want not a loop device", p, err)
		}
	}
}

// TestAttachConcurrent attaches many files at once from goroutines and,
// when losetup is installed, from another program at the same time: every
// attach gets a device of its own.
func TestAttachConcurrent(t *testing.T) {
	needRoot(t)
	l := New()
	dir := t.TempDir()
	const n = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		devs = map[string]string{}
		errs []error
	)
	record := func(dev, file string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		if other, taken := devs[dev]; taken {
			errs = append(errs, fmt.Errorf("%s given to both %s and %s", dev, other, file))
		}
		devs[dev] = file
	}
	t.Cleanup(func() {
		for dev := range devs {
			detach(t, l, dev)
		}
	})
	losetup, lerr := exec.LookPath("losetup")
	for i := range n {
		file := sparse(t, dir, fmt.Sprintf("g%d.img", i), 1<<20)
		wg.Go(func() {
			d, err := l.Attach(file, Options{})
			record(d.Path, file, err)
		})
		if lerr == nil {
			other := sparse(t, dir, fmt.Sprintf("p%d.img", i), 1<<20)
			wg.Go(func() {
				out, err := exec.Command(losetup, "--find", "--show", other).Output()
				record(strings.TrimSpace(string(out)), other, err)
			})
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	for dev, file := range devs {
		found, err := l.Find(file)
		if err != nil || len(found) != 1 || found[0].Path != dev {
			t.Errorf("Find(%s) = %v, %v; want [%s]", file, paths(found), err, dev)
		}
	}
}
