package dirvolimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

type file struct {
	name     string
	typ      byte
	mode     int64
	data     string
	link     string
	uname    string
	modTime  time.Time
	uid, gid int
}

func tarOf(t *testing.T, files []file) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Typeflag: f.typ, Name: f.name, Linkname: f.link, Mode: f.mode, Size: int64(len(f.data)),
			Uname: f.uname, ModTime: f.modTime, Uid: f.uid, Gid: f.gid}
		if f.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, f.data); err != nil && f.typ == tar.TypeReg {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func entries(t *testing.T, layer []byte) []*tar.Header {
	t.Helper()
	var out []*tar.Header
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, hdr)
	}
}

// The layer depends on the files alone: not on the order packages list
// them, their timestamps or owner names.
func TestLayerIsReproducible(t *testing.T) {
	t1 := time.Date(2023, 5, 1, 12, 0, 0, 0, time.UTC)
	t2 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	a := []file{
		{name: "./", typ: tar.TypeDir, mode: 0o755, modTime: t1},
		{name: "./usr/bin/", typ: tar.TypeDir, mode: 0o755, modTime: t1, uname: "root"},
		{name: "./usr/bin/tool", typ: tar.TypeReg, mode: 0o755, data: "tool", modTime: t1, uname: "root"},
		{name: "./bin/mount", typ: tar.TypeReg, mode: 0o4755, data: "mount", modTime: t1},
		{name: "./sbin/mkfs", typ: tar.TypeSymlink, link: "../bin/mount", mode: 0o777, modTime: t1},
		{name: "./bin/umount", typ: tar.TypeLink, link: "./bin/mount", modTime: t1},
	}
	b := []file{a[4], a[2], a[3], a[5], a[1]} // another order, no root entry, other times
	for i := range b {
		b[i].modTime = t2
		b[i].uname = "builder"
	}
	epoch := time.Unix(0, 0)
	layer := func(files []file) []byte {
		tr := newTree()
		if err := tr.addTar(bytes.NewReader(tarOf(t, files)), "pkg"); err != nil {
			t.Fatal(err)
		}
		out, err := tr.bytes(epoch)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	la, lb := layer(a), layer(b)
	if !bytes.Equal(la, lb) {
		t.Fatal("the same files in another order, with other timestamps and owner names, give another layer")
	}
	var names []string
	for _, h := range entries(t, la) {
		names = append(names, h.Name)
		if !h.ModTime.Equal(epoch) || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %v uname %q gname %q, want epoch and no names", h.Name, h.ModTime, h.Uname, h.Gname)
		}
		if h.Name == "bin/mount" && h.Mode != 0o4755 {
			t.Errorf("bin/mount: mode %o, want the setuid bit kept (4755)", h.Mode)
		}
	}
	want := "bin/ bin/mount bin/umount sbin/ sbin/mkfs usr/ usr/bin/ usr/bin/tool"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("entries %q, want %q (sorted, parents added, root left out)", got, want)
	}
}

func TestLayerConflicts(t *testing.T) {
	tr := newTree()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tr.addTar(bytes.NewReader(tarOf(t, []file{{name: "./etc/x", typ: tar.TypeReg, mode: 0o644, data: "one"}})), "pkg-a"))
	// The same file from a second package is fine; different content is not.
	must(tr.addTar(bytes.NewReader(tarOf(t, []file{{name: "etc/x", typ: tar.TypeReg, mode: 0o644, data: "one"}})), "pkg-b"))
	err := tr.addTar(bytes.NewReader(tarOf(t, []file{{name: "etc/x", typ: tar.TypeReg, mode: 0o644, data: "two"}})), "pkg-c")
	if err == nil || !strings.Contains(err.Error(), "pkg-a") || !strings.Contains(err.Error(), "pkg-c") {
		t.Errorf("conflicting /etc/x: %v, want an error naming pkg-a and pkg-c", err)
	}
	// A hard link to a file the layer leaves out is refused at write time.
	must(tr.addTar(bytes.NewReader(tarOf(t, []file{{name: "bin/l", typ: tar.TypeLink, link: "usr/share/man/gone"}})), "pkg-d"))
	if _, err := tr.bytes(time.Unix(0, 0)); err == nil {
		t.Error("a hard link to a missing file was written")
	}
}

func TestDropped(t *testing.T) {
	for name, want := range map[string]bool{
		"usr/share/man":                             true,
		"usr/share/man/man8/losetup.8.gz":           true,
		"usr/share/locale/de/LC_MESSAGES/x.mo":      true,
		"usr/share/doc/mount/changelog.gz":          true,
		"usr/share/doc/mount/copyright":             false,
		"usr/share/doc/mount":                       false,
		"usr/share/doc":                             false,
		"usr/lib/x86_64-linux-gnu/gconv/IBM1390.so": true,
		"usr/lib/x86_64-linux-gnu/gconv":            true,
		"usr/lib/x86_64-linux-gnu/gconvx.so":        false,
		"usr/lib/x86_64-linux-gnu/libc.so.6":        false,
		"sbin/losetup":                              false,
		"usr/share/mandoc":                          false,
	} {
		if got := dropped(name); got != want {
			t.Errorf("dropped(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestLockRoundTrip(t *testing.T) {
	l, err := DefaultLock()
	if err != nil {
		t.Fatalf("debian-packages.lock: %v", err)
	}
	back, err := ParseLock(l.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if back.Release != l.Release || len(back.Packages) != len(l.Packages) {
		t.Fatalf("lock does not survive a round trip: %+v", back)
	}
	for _, name := range append(append([]string{}, NodePackages...), BasePackages...) {
		if !l.Has(name) {
			t.Errorf("debian-packages.lock lacks %s, a package of the recipe: run make image-lock", name)
		}
	}
	for _, bad := range []string{"", "# debian 12\n", "# debian 12\nmount 1.0\n", "mount 1.0 amd64 sha256:" + strings.Repeat("0", 64) + "\n"} {
		if _, err := ParseLock([]byte(bad)); err == nil {
			t.Errorf("ParseLock(%q) accepted", bad)
		}
	}
}
