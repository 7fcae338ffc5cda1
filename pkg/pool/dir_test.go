package pool

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/dirvol/dirvol/internal/disktree"

	"golang.org/x/sys/unix"
)

const testID = "vol-0123456789abcdef0123456789abcdef"

func newDir(t *testing.T) (*Dir, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "pool")
	d, err := NewDir("default", root)
	if err != nil {
		t.Fatalf("NewDir: %v", err)
	}
	return d, root
}

// tree describes every entry under root (root itself included): type,
// permissions, owner, and the content of files or the target of links.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out, err := disktree.Describe(root)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for _, d := range disktree.Diff(before, after) {
		t.Errorf("%s: %s", what, d)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func mustCreate(t *testing.T, d *Dir, id string) string {
	t.Helper()
	if err := d.Create(id, VolumeSpec{Perm: Permissions{Mode: 0o777, UID: -1, GID: -1}}); err != nil {
		t.Fatalf("Create(%s): %v", id, err)
	}
	p, err := d.Path(id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewDir(t *testing.T) {
	d, root := newDir(t)
	for _, sub := range []string{"volumes", "snapshots", "archive", ".trash", ".staging/volumes", ".staging/snapshots"} {
		if fi, err := os.Stat(filepath.Join(root, sub)); err != nil || !fi.IsDir() {
			t.Errorf("%s not created: %v", sub, err)
		}
	}
	if d.Name() != "default" || d.Backend() != "dir" || d.EnforcesSize() || d.Root() != root {
		t.Errorf("Name/Backend/EnforcesSize/Root = %q %q %v %q", d.Name(), d.Backend(), d.EnforcesSize(), d.Root())
	}
	p := mustCreate(t, d, testID)
	writeFile(t, filepath.Join(p, "data"), "kept")
	if _, err := NewDir("default", root+"/"); err != nil {
		t.Fatalf("NewDir on an existing pool: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(p, "data")); err != nil || string(data) != "kept" {
		t.Errorf("NewDir on an existing pool lost data: %q, %v", data, err)
	}

	bad := []struct{ name, pool, root string }{
		{name: "relative root", pool: "p", root: "relative/pool"},
		{name: "empty pool name", pool: "", root: root},
		{name: "pool name with slash", pool: "a/b", root: root},
		{name: "pool name dot-dot", pool: "..", root: root},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewDir(tt.pool, tt.root); err == nil {
				t.Errorf("NewDir(%q, %q) succeeded", tt.pool, tt.root)
			}
		})
	}
}

func TestCreate(t *testing.T) {
	old := unix.Umask(0o077)
	t.Cleanup(func() { unix.Umask(old) })
	tests := []struct {
		name     string
		perm     Permissions
		uid, gid uint32
	}{
		{name: "world writable", perm: Permissions{Mode: 0o777, UID: -1, GID: -1}},
		{name: "group only", perm: Permissions{Mode: 0o770, UID: -1, GID: -1}},
		{name: "owner and group", perm: Permissions{Mode: 0o750, UID: 1234, GID: 5678}, uid: 1234, gid: 5678},
		{name: "owner only", perm: Permissions{Mode: 0o700, UID: 4321, GID: -1}, uid: 4321},
		{name: "group only id", perm: Permissions{Mode: 0o775, UID: -1, GID: 99}, gid: 99},
		// Special bits survive the chown that follows the chmod.
		{name: "setgid shared group", perm: Permissions{Mode: 0o2770, UID: 1234, GID: 99}, uid: 1234, gid: 99},
		{name: "sticky world writable", perm: Permissions{Mode: 0o1777, UID: -1, GID: -1}},
		{name: "setuid owner", perm: Permissions{Mode: 0o4755, UID: 4321, GID: 5678}, uid: 4321, gid: 5678},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := newDir(t)
			for attempt := range 2 {
				if err := d.Create(testID, VolumeSpec{Perm: tt.perm}); err != nil {
					t.Fatalf("Create #%d: %v", attempt+1, err)
				}
				p, _ := d.Path(testID)
				if attempt == 0 {
					writeFile(t, filepath.Join(p, "data"), "survives a second Create")
				}
				fi, err := os.Lstat(p)
				if err != nil || !fi.IsDir() {
					t.Fatalf("volume directory: %v", err)
				}
				if got := fi.Sys().(*syscall.Stat_t).Mode & 0o7777; got != tt.perm.Mode {
					t.Errorf("mode = %o, want %o", got, tt.perm.Mode)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if st.Uid != tt.uid || st.Gid != tt.gid {
					t.Errorf("owner = %d:%d, want %d:%d", st.Uid, st.Gid, tt.uid, tt.gid)
				}
				if ok, err := d.Exists(testID); !ok || err != nil {
					t.Errorf("Exists = %v, %v", ok, err)
				}
			}
			p, _ := d.Path(testID)
			if data, err := os.ReadFile(filepath.Join(p, "data")); err != nil || string(data) != "survives a second Create" {
				t.Errorf("second Create lost data: %q, %v", data, err)
			}
		})
	}
}

func TestExists(t *testing.T) {
	d, root := newDir(t)
	if ok, err := d.Exists(testID); ok || err != nil {
		t.Errorf("Exists(missing) = %v, %v", ok, err)
	}
	writeFile(t, filepath.Join(root, "volumes", "vol-file"), "")
	if _, err := d.Exists("vol-file"); err == nil {
		t.Error("Exists of a regular file is not an error")
	}
}

var invalidNames = []struct{ name, id string }{
	{name: "empty", id: ""},
	{name: "dot", id: "."},
	{name: "dot-dot", id: ".."},
	{name: "slash", id: "a/b"},
	{name: "parent", id: "../x"},
	{name: "leading slash", id: "/etc"},
	{name: "NUL", id: "vol\x00x"},
	{name: "256 bytes", id: strings.Repeat("a", 256)},
}

func TestInvalidNames(t *testing.T) {
	d, root := newDir(t)
	victim := mustCreate(t, d, testID)
	writeFile(t, filepath.Join(victim, "data"), "data")
	writeFile(t, filepath.Join(root, "x"), "next to volumes")
	parent := filepath.Dir(root)
	before := tree(t, parent)
	for _, tt := range invalidNames {
		t.Run(tt.name, func(t *testing.T) {
			ops := map[string]func() error{
				"Path":           func() error { _, err := d.Path(tt.id); return err },
				"Create":         func() error { return d.Create(tt.id, VolumeSpec{Perm: Permissions{Mode: 0o777, UID: -1, GID: -1}}) },
				"Exists":         func() error { _, err := d.Exists(tt.id); return err },
				"Remove":         func() error { return d.Remove(tt.id) },
				"Retain":         func() error { return d.Retain(tt.id, RetainNote{VolumeID: tt.id}) },
				"Usage":          func() error { _, err := d.Usage(tt.id); return err },
				"Archive source": func() error { return d.Archive(tt.id, "dest") },
				"Archive dest":   func() error { return d.Archive(testID, tt.id) },
			}
			for op, f := range ops {
				if err := f(); !errors.Is(err, ErrInvalidName) {
					t.Errorf("%s(%q) = %v, want ErrInvalidName", op, tt.id, err)
				}
			}
			sameTree(t, "disk", before, tree(t, parent))
		})
	}
	t.Run("255 bytes is accepted", func(t *testing.T) {
		id := strings.Repeat("a", 255)
		if p, err := d.Path(id); err != nil || p != filepath.Join(root, "volumes", id) {
			t.Errorf("Path = %q, %v", p, err)
		}
	})
}

func TestScan(t *testing.T) {
	d, root := newDir(t)
	dirs, retained, err := d.Scan()
	if err != nil || len(dirs) != 0 || len(retained) != 0 {
		t.Fatalf("Scan of an empty pool = %v, %v, %v", dirs, retained, err)
	}
	for _, id := range []string{"vol-c", "vol-a", "vol-b"} {
		mustCreate(t, d, id)
	}
	if err := d.Retain("vol-b", RetainNote{VolumeID: "vol-b"}); err != nil {
		t.Fatal(err)
	}
	// A note named for another ID does not make vol-c retained.
	writeFile(t, filepath.Join(root, "volumes", "vol-c", retainNoteName("vol-a")), "{}")
	writeFile(t, filepath.Join(root, "volumes", "a-file"), "")
	if err := os.Symlink(t.TempDir(), filepath.Join(root, "volumes", "a-link")); err != nil {
		t.Fatal(err)
	}
	dirs, retained, err = d.Scan()
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if want := []string{"vol-a", "vol-b", "vol-c"}; !reflect.DeepEqual(dirs, want) {
		t.Errorf("dirs = %v, want %v", dirs, want)
	}
	if want := []string{"vol-b"}; !reflect.DeepEqual(retained, want) {
		t.Errorf("retained = %v, want %v", retained, want)
	}
}

func TestStat(t *testing.T) {
	d, _ := newDir(t)
	fs, err := d.Stat()
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if fs.TotalBytes <= 0 || fs.AvailableBytes <= 0 || fs.AvailableBytes > fs.TotalBytes {
		t.Errorf("Stat = %+v", fs)
	}
}

func TestWritable(t *testing.T) {
	d, root := newDir(t)
	if err := d.Writable(); err != nil {
		t.Fatalf("Writable on a normal directory: %v", err)
	}
	if err := unix.Mount(root, root, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("cannot bind-mount (%v); read-only case not tested", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(root, 0); err != nil {
			t.Errorf("unmount %s: %v", root, err)
		}
	})
	if err := unix.Mount("", root, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		t.Skipf("cannot remount read-only (%v); read-only case not tested", err)
	}
	err := d.Writable()
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("Writable on a read-only pool = %v, want EROFS", err)
	}
}
