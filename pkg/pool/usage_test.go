package pool

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// allocated is the space st_blocks says path takes, without following links.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

func writeBytes(t *testing.T, path string, n int) {
	t.Helper()
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil { // have the blocks allocated, not delayed
		t.Fatal(err)
	}
}

func TestUsage(t *testing.T) {
	outsideDir := t.TempDir()
	big := filepath.Join(outsideDir, "big")
	writeBytes(t, big, 4<<20)

	tests := []struct {
		name string
		// build fills the volume and returns the paths whose inodes the
		// usage must count, each once.
		build func(t *testing.T, p string) []string
	}{
		{name: "empty", build: func(t *testing.T, p string) []string { return []string{p} }},
		{name: "files and directories", build: func(t *testing.T, p string) []string {
			sub := filepath.Join(p, "a", "b")
			if err := os.MkdirAll(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			writeBytes(t, filepath.Join(p, "one"), 100<<10)
			writeBytes(t, filepath.Join(sub, "two"), 1<<20)
			writeBytes(t, filepath.Join(sub, "empty"), 0)
			return []string{p, filepath.Join(p, "a"), sub, filepath.Join(p, "one"), filepath.Join(sub, "two"), filepath.Join(sub, "empty")}
		}},
		{name: "hard links counted once", build: func(t *testing.T, p string) []string {
			f := filepath.Join(p, "file")
			writeBytes(t, f, 1<<20)
			for _, name := range []string{"link1", "link2"} {
				if err := os.Link(f, filepath.Join(p, name)); err != nil {
					t.Fatal(err)
				}
			}
			return []string{p, f}
		}},
		{name: "symlink to big outside file", build: func(t *testing.T, p string) []string {
			l := filepath.Join(p, "link")
			if err := os.Symlink(big, l); err != nil {
				t.Fatal(err)
			}
			return []string{p, l}
		}},
		{name: "symlink to outside dir", build: func(t *testing.T, p string) []string {
			l := filepath.Join(p, "link")
			if err := os.Symlink(outsideDir, l); err != nil {
				t.Fatal(err)
			}
			return []string{p, l}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := newDir(t)
			p := mustCreate(t, d, testID)
			counted := tt.build(t, p)
			var want Usage
			for _, c := range counted {
				want.Inodes++
				want.Bytes += allocated(t, c)
			}
			got, err := d.Usage(testID)
			if err != nil {
				t.Fatalf("Usage: %v", err)
			}
			if got != want {
				t.Errorf("Usage = %+v, want %+v", got, want)
			}
			if got.Bytes >= 4<<20 && tt.name != "files and directories" {
				t.Errorf("Usage counted %d bytes: something outside the volume or a link twice", got.Bytes)
			}
		})
	}
}

func TestUsageMissing(t *testing.T) {
	d, _ := newDir(t)
	if _, err := d.Usage(testID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Usage of a missing volume = %v, want ErrNotFound", err)
	}
}

// A filesystem mounted inside a volume is not the volume's data.
func TestUsageSkipsMounts(t *testing.T) {
	d, _ := newDir(t)
	p := mustCreate(t, d, testID)
	mnt := filepath.Join(p, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	before, err := d.Usage(testID)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=8m"); err != nil {
		t.Skipf("cannot mount tmpfs (%v)", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	writeBytes(t, filepath.Join(mnt, "big"), 2<<20)
	after, err := d.Usage(testID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Bytes >= 2<<20 || after.Inodes > before.Inodes {
		t.Errorf("Usage with a mount inside = %+v, before the mount %+v", after, before)
	}
}
