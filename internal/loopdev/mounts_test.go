package loopdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
)

// TestBindMountsTable reads made-up mount tables for /dev/null, whose
// filesystem is whatever holds the test machine's /dev.
func TestBindMountsTable(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat("/dev/null", &st); err != nil {
		t.Skip(err)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	tests := []struct {
		name  string
		table string
		want  []string
	}{
		{
			// The root filesystem is listed after /dev, as in containers:
			// order alone would take / for the filesystem holding /dev/null.
			name: "root listed after /dev",
			table: "23 26 " + dev + " / /dev rw - devtmpfs devtmpfs rw\n" +
				"26 1 254:0 / / rw - ext4 /dev/vda rw\n" +
				"41 26 " + dev + " /null /pods/a/mount rw - devtmpfs devtmpfs rw\n" +
				"42 26 " + dev + " /null /pods/b/mount ro - devtmpfs devtmpfs rw\n" +
				"43 26 " + dev + " /zero /pods/c/mount rw - devtmpfs devtmpfs rw\n" +
				"44 26 254:0 /null /pods/d/mount rw - ext4 /dev/vda rw\n",
			want: []string{"/pods/a/mount", "/pods/b/mount"},
		},
		{
			name: "dev mounted from a subdirectory of its filesystem",
			table: "26 1 254:0 / / rw - ext4 /dev/vda rw\n" +
				"23 26 " + dev + " /host-dev /dev rw - devtmpfs devtmpfs rw\n" +
				"41 26 " + dev + " /host-dev/null /pods/a/mount rw - devtmpfs devtmpfs rw\n" +
				"42 26 " + dev + " /null /pods/b/mount rw - devtmpfs devtmpfs rw\n",
			want: []string{"/pods/a/mount"},
		},
		{
			name:  "not bind-mounted",
			table: "26 1 254:0 / / rw - ext4 /dev/vda rw\n23 26 " + dev + " / /dev rw - devtmpfs devtmpfs rw\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "mountinfo")
			if err := os.WriteFile(p, []byte(tt.table), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := bindMounts("/dev/null", p)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("bindMounts() = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	p := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(p, []byte("26 1 254:0 / / rw - ext4 /dev/vda rw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := bindMounts("/dev/null", p); err == nil {
		t.Error("bindMounts() with no mount of /dev's filesystem = nil error")
	}
}

func TestBindMounts(t *testing.T) {
	needRoot(t)
	l := New()
	dir := t.TempDir()
	d := attach(t, l, sparse(t, dir, "vol.img", 1<<20), Options{})
	if _, err := l.BindMounts("/dev/null"); !errors.Is(err, ErrNotLoop) {
		t.Fatalf("BindMounts(/dev/null) = %v, want ErrNotLoop", err)
	}
	var targets []string
	mounter := mount.New("")
	for _, name := range []string{"a", "b"} {
		target := filepath.Join(dir, name)
		if err := os.WriteFile(target, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := mounter.Mount(d.Path, target, "", []string{"bind"}); err != nil {
			t.Skipf("cannot bind-mount here: %v", err)
		}
		t.Cleanup(func() { _ = mounter.Unmount(target) })
		targets = append(targets, target)
	}
	got, err := l.BindMounts(d.Path)
	slices.Sort(got)
	if err != nil || !slices.Equal(got, targets) {
		t.Fatalf("BindMounts(%s) = %v, %v; want %v", d.Path, got, err, targets)
	}
	if err := mounter.Unmount(targets[0]); err != nil {
		t.Fatal(err)
	}
	if got, err := l.BindMounts(d.Path); err != nil || !slices.Equal(got, targets[1:]) {
		t.Fatalf("BindMounts(%s) after an unmount = %v, %v; want %v", d.Path, got, err, targets[1:])
	}
}
