package loopdev

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// devDirWithControl returns a device directory that holds a node of the
// host's loop-control and no loop device nodes, as the /dev of a container
// started before the kernel made the devices it is given.
func devDirWithControl(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(hostDevDir, loopControl), &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(dir, loopControl), unix.S_IFCHR|0o600, int(st.Rdev)); err != nil {
		t.Fatalf("make %s in %s: %v", loopControl, dir, err)
	}
	return dir
}

// wantNode fails the test unless path is a block device node with the
// device number sysfs gives for the loop device of that name, and mode 0660.
func wantNode(t *testing.T, path string) {
	t.Helper()
	sys, err := os.ReadFile(filepath.Join(sysBlock, filepath.Base(path), "dev"))
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatalf("device node %s: %v", path, err)
	}
	got := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || got != strings.TrimSpace(string(sys)) || st.Mode&0o7777 != nodeMode {
		t.Fatalf("%s: mode %o, device %s; want a block device %s with mode %o",
			path, st.Mode, got, strings.TrimSpace(string(sys)), nodeMode)
	}
}

func TestAttachCreatesMissingNode(t *testing.T) {
	needRoot(t)
	dev := devDirWithControl(t)
	l := &Loops{devDir: dev}
	file := sparse(t, t.TempDir(), "vol.img", 2<<20)
	d := attach(t, l, file, Options{})
	if filepath.Dir(d.Path) != dev || !d.NodeCreated {
		t.Fatalf("Attach() = %+v; want a device in %s whose node it created", d, dev)
	}
	wantNode(t, d.Path)

	// The device works through the node: what is written to it is in the
	// file.
	pattern := bytes.Repeat([]byte("dirvol"), 100)
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

	// The node is there now: found through it, not made again.
	found, err := l.Find(file)
	if err != nil || len(found) != 1 || found[0].Path != d.Path || found[0].NodeCreated {
		t.Fatalf("Find() = %+v, %v; want [%s] with its node already there", found, err, d.Path)
	}
	if size, err := l.Refresh(d.Path); err != nil || size != 2<<20 {
		t.Fatalf("Refresh() = %d, %v; want %d", size, err, 2<<20)
	}
}

// TestFindCreatesMissingNode finds a device attached elsewhere, whose node
// is missing from the device directory, and detaches it through the node
// that Find created.
func TestFindCreatesMissingNode(t *testing.T) {
	needRoot(t)
	host := New()
	file := sparse(t, t.TempDir(), "found.img", 1<<20)
	hd := attach(t, host, file, Options{})
	if hd.NodeCreated {
		t.Fatalf("Attach() on the host's /dev = %+v; want its node already there", hd)
	}

	dev := t.TempDir()
	l := &Loops{devDir: dev}
	found, err := l.Find(file)
	want := filepath.Join(dev, hd.Name())
	if err != nil || len(found) != 1 || found[0].Path != want || !found[0].NodeCreated {
		t.Fatalf("Find() = %+v, %v; want [%s] whose node it created", found, err, want)
	}
	wantNode(t, want)
	at, ok, err := l.At(hd.Path)
	if err != nil || !ok || at.Path != want {
		t.Fatalf("At(%s) = %+v, %t, %v; want %s", hd.Path, at, ok, err, want)
	}
	detach(t, l, want)
}

// TestMissingNodeNeverReplaced: when something appears at the node's path
// between the open that found it missing and the mknod, it is left as it
// is, and used only if it is a node of the same device.
func TestMissingNodeNeverReplaced(t *testing.T) {
	needRoot(t)
	file := sparse(t, t.TempDir(), "kept.img", 1<<20)
	d := attach(t, New(), file, Options{})
	rdev, err := devNumber(d.Name())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// make puts something at path.
		make        func(t *testing.T, path string)
		wantErr     error
		wantCreated bool
	}{
		{
			name:        "nothing there",
			make:        func(*testing.T, string) {},
			wantCreated: true,
		},
		{
			name: "node of the same device",
			make: func(t *testing.T, path string) {
				if err := unix.Mknod(path, unix.S_IFBLK|0o600, int(rdev)); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "regular file",
			make: func(t *testing.T, path string) {
				if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: ErrNotLoop,
		},
		{
			name: "node of another device",
			make: func(t *testing.T, path string) {
				if err := unix.Mknod(path, unix.S_IFBLK|0o600, int(unix.Mkdev(unix.Major(rdev), unix.Minor(rdev)+1))); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: ErrNotLoop,
		},
		{
			name: "dangling symbolic link",
			make: func(t *testing.T, path string) {
				if err := os.Symlink(filepath.Join(filepath.Dir(path), "nowhere"), path); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: ErrNotLoop,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dev := t.TempDir()
			l := &Loops{devDir: dev}
			path := filepath.Join(dev, d.Name())
			tc.make(t, path)
			var before unix.Stat_t
			beforeErr := unix.Lstat(path, &before)

			fd, created, err := l.openMissing(d.Name(), unix.O_RDONLY)
			if err == nil {
				closeFD(fd)
			}
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) || created != tc.wantCreated {
				t.Fatalf("openMissing() = created %t, %v; want created %t, %v", created, err, tc.wantCreated, tc.wantErr)
			}
			if beforeErr != nil {
				wantNode(t, path)
				return
			}
			var after unix.Stat_t
			if err := unix.Lstat(path, &after); err != nil || after.Ino != before.Ino || after.Mode != before.Mode || after.Rdev != before.Rdev {
				t.Fatalf("%s changed: %+v, %v; was %+v", path, after, err, before)
			}
		})
	}
}

func TestMissingNodeOfNoDevice(t *testing.T) {
	needRoot(t)
	l := &Loops{devDir: t.TempDir()}
	// Far above any device number the kernel hands out here.
	const name = "loop987654"
	if _, _, err := l.openMissing(name, unix.O_RDONLY); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("openMissing(%s) = %v; want ENOENT", name, err)
	}
	if _, err := os.Lstat(filepath.Join(l.devDir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a node for a device that does not exist: %v", err)
	}
}
