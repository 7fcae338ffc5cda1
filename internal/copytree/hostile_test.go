package copytree

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/internal/testfs"

	"golang.org/x/sys/unix"
)

// The source is written by a workload: links it planted, pointing out of
// it, are copied as links and never followed, and nothing outside the
// source is read (access times would show it) or written.
func TestCopyNeverFollowsLinks(t *testing.T) {
	for _, k := range kinds {
		t.Run(string(k), func(t *testing.T) {
			mnt := testfs.Mount(t, k, fsSize)
			outside := filepath.Join(mnt, "outside")
			write(t, filepath.Join(outside, "secret"), "SECRET", 0o600)
			write(t, filepath.Join(outside, "dir", "file"), "SECRET too", 0o644)
			src := filepath.Join(mnt, "src")
			must(t, os.Mkdir(src, 0o777))
			links := map[string]string{
				"to-etc":             "/etc",
				"to-passwd":          "/etc/passwd",
				"to-outside":         outside,
				"to-secret":          filepath.Join(outside, "secret"),
				"deep/up/relative":   "../../../outside",
				"deep/up/to-dir":     "../../../outside/dir",
				"deep/to-dst":        "../../dst",
				"deep/to-dst-parent": "../../dst/..",
			}
			for l, target := range links {
				must(t, os.MkdirAll(filepath.Dir(filepath.Join(src, l)), 0o755))
				must(t, os.Symlink(target, filepath.Join(src, l)))
			}
			disk := tree(t, mnt) // reads files: before the times are set
			setTimesTree(t, outside)
			setTimesTree(t, src)
			wantSrc := describe(t, src)
			wantOutside := describe(t, outside)

			dst := filepath.Join(mnt, "dst")
			st, err := Copy(src, dst)
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			same(t, "copy", wantSrc, describe(t, dst))
			same(t, "outside (times show reads)", wantOutside, describe(t, outside))
			after := tree(t, mnt)
			for k := range after {
				if k == "dst" || strings.HasPrefix(k, "dst/") {
					delete(after, k)
				}
			}
			same(t, "disk outside the copy", disk, after)
			if st.Files != 0 || st.Symlinks != int64(len(links)) {
				t.Errorf("Stats = %+v, want %d links and no files", st, len(links))
			}
		})
	}
}

// A workload renaming directories and swapping them for links to outside the
// source while the copy runs cannot lead the copy outside: each copy either
// fails or holds only the source's data, and nothing outside is read or
// written.
func TestCopyRacingRenames(t *testing.T) {
	mnt := testfs.Mount(t, testfs.XFS, fsSize)
	outside := filepath.Join(mnt, "outside")
	write(t, filepath.Join(outside, "secret"), "SECRET", 0o600)
	write(t, filepath.Join(outside, "d", "secret"), "SECRET", 0o600)
	setTimesTree(t, outside)
	wantOutside := describe(t, outside)
	src := filepath.Join(mnt, "src")
	for i := range 50 {
		write(t, filepath.Join(src, "d", fmt.Sprintf("f%02d", i)), "volume data", 0o644)
		write(t, filepath.Join(src, "d", "sub", fmt.Sprintf("f%02d", i)), "volume data", 0o644)
	}
	write(t, filepath.Join(src, "f"), "volume data", 0o644)

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		d, moved := filepath.Join(src, "d"), filepath.Join(src, "moved")
		f, fmoved := filepath.Join(src, "f"), filepath.Join(src, "fmoved")
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Swap directory d for a link to outside, and file f for a
			// link to the secret, then put both back.
			_ = os.Rename(d, moved)
			_ = os.Symlink(outside, d)
			_ = os.Rename(f, fmoved)
			_ = os.Symlink(filepath.Join(outside, "secret"), f)
			_ = os.Remove(d)
			_ = os.Remove(f)
			_ = os.Rename(moved, d)
			_ = os.Rename(fmoved, f)
			// And move a subdirectory up and out of the copy's way.
			_ = os.Rename(filepath.Join(d, "sub"), filepath.Join(src, "sub"))
			_ = os.Rename(filepath.Join(src, "sub"), filepath.Join(d, "sub"))
		}
	}()
	var ok, failed, sawLink int
	for i := range 60 {
		dst := filepath.Join(mnt, fmt.Sprintf("dst%03d", i))
		if _, err := Copy(src, dst); err != nil {
			failed++
		} else {
			ok++
		}
		if fi, err := os.Lstat(filepath.Join(dst, "d")); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			sawLink++
		}
		must(t, filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			if fi.Mode().IsRegular() {
				data, err := os.ReadFile(p)
				must(t, err)
				if string(data) != "volume data" {
					t.Errorf("%s holds %q, which is not the source's", p, data)
				}
			}
			return nil
		}))
		must(t, os.RemoveAll(dst))
	}
	close(stop)
	<-done
	same(t, "outside (times show reads)", wantOutside, describe(t, outside))
	t.Logf("%d copies succeeded (%d caught d as a link), %d failed on a changing source", ok, sawLink, failed)
}

func TestCopyRefuses(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	write(t, filepath.Join(src, "f"), "data", 0o644)
	must(t, os.Symlink(src, filepath.Join(base, "link-to-src")))
	write(t, filepath.Join(base, "taken", "keep"), "kept", 0o644)
	must(t, os.Symlink(filepath.Join(base, "elsewhere"), filepath.Join(base, "dst-link")))
	tests := []struct {
		name, src, dst string
	}{
		{name: "source is a symbolic link", src: filepath.Join(base, "link-to-src"), dst: filepath.Join(base, "new1")},
		{name: "source is a file", src: filepath.Join(src, "f"), dst: filepath.Join(base, "new2")},
		{name: "source missing", src: filepath.Join(base, "missing"), dst: filepath.Join(base, "new3")},
		{name: "destination exists", src: src, dst: filepath.Join(base, "taken")},
		{name: "destination is a link", src: src, dst: filepath.Join(base, "dst-link")},
		{name: "destination parent missing", src: src, dst: filepath.Join(base, "no", "dst")},
	}
	before := tree(t, base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Copy(tt.src, tt.dst); err == nil {
				t.Errorf("Copy(%s, %s) succeeded", tt.src, tt.dst)
			}
			same(t, "disk", before, tree(t, base))
		})
	}
}

// Something mounted inside the source is not the source's data: another
// filesystem, a bind mount of a directory or file from elsewhere on the
// same filesystem, or of the source itself (which would never end).
func TestCopySkipsMounts(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	write(t, filepath.Join(src, "f"), "data", 0o644)
	write(t, filepath.Join(base, "outside", "secret"), "SECRET", 0o600)
	other := testfs.Mount(t, testfs.Ext4, 0)
	write(t, filepath.Join(other, "foreign"), "not the volume's", 0o644)
	mounts := []struct{ from, at string }{
		{other, "other-fs"},
		{filepath.Join(base, "outside"), "same-fs-dir"},
		{filepath.Join(base, "outside", "secret"), "same-fs-file"},
		{src, "sub/itself"},
	}
	for _, m := range mounts {
		at := filepath.Join(src, m.at)
		if fi, _ := os.Stat(m.from); fi.IsDir() {
			must(t, os.MkdirAll(at, 0o755))
		} else {
			write(t, at, "mount point", 0o644)
		}
		must(t, unix.Mount(m.from, at, "", unix.MS_BIND, ""))
		t.Cleanup(func() { must(t, unix.Unmount(at, 0)) })
	}
	st, err := Copy(src, filepath.Join(base, "dst"))
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if st.MountsSkipped != int64(len(mounts)) || st.Files != 1 {
		t.Errorf("Stats = %+v, want 1 file and %d skipped mounts", st, len(mounts))
	}
	for _, m := range mounts {
		if _, err := os.Lstat(filepath.Join(base, "dst", m.at)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("mount point %s copied: %v", m.at, err)
		}
	}
}
