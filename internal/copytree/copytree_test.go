package copytree

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/internal/disktree"
	"github.com/dirvol/dirvol/internal/testfs"

	"golang.org/x/sys/unix"
)

// kinds are the filesystems every property is checked on: ext4 copies data,
// XFS with reflink shares it.
var kinds = []testfs.Kind{testfs.Ext4, testfs.XFS}

// fsSize is large enough for ext4 to use 256-byte inodes, which hold
// nanosecond timestamps.
const fsSize = 1 << 30

// describe maps every entry under root to everything Copy promises to keep:
// type, mode with its special bits, owner, access (but for links) and
// modification times to the nanosecond, length and content of files, link targets, device
// numbers, extended attributes, and which names share an inode. It opens
// nothing with a changing access time (O_NOATIME), so describing a tree
// leaves it as it was.
func describe(t *testing.T, root string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	firstName := make(map[uint64]string)
	var walk func(rel string)
	walk = func(rel string) {
		p := filepath.Join(root, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		d := fmt.Sprintf("type=%o mode=%04o owner=%d:%d mtime=%d.%09d",
			st.Mode&unix.S_IFMT, st.Mode&07777, st.Uid, st.Gid, st.Mtim.Sec, st.Mtim.Nsec)
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			// Reading a link sets its access time, and nothing can
			// read one without: TestCopyLinkTimes checks link times.
			d += fmt.Sprintf(" atime=%d.%09d", st.Atim.Sec, st.Atim.Nsec)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			d += fmt.Sprintf(" size=%d sha256=%x nlink=%d", st.Size, hashFile(t, p), st.Nlink)
			if st.Nlink > 1 {
				if first, ok := firstName[st.Ino]; ok {
					d += " same-inode-as=" + first
				} else {
					firstName[st.Ino] = rel
				}
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				t.Fatal(err)
			}
			d += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			d += fmt.Sprintf(" rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		d += " xattrs=" + xattrList(t, p)
		out[rel] = d
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return
		}
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NOATIME, 0)
		if err != nil {
			t.Fatal(err)
		}
		names, err := readNames(fd)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(names)
		for _, n := range names {
			walk(filepath.Join(rel, n))
		}
	}
	walk(".")
	return out
}

func hashFile(t *testing.T, p string) []byte {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOATIME|unix.O_NOFOLLOW, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := f.WriteTo(h); err != nil {
		t.Fatal(err)
	}
	return h.Sum(nil)
}

func xattrList(t *testing.T, p string) string {
	t.Helper()
	names, err := readSized(func(b []byte) (int, error) { return unix.Llistxattr(p, b) })
	if err != nil && !errors.Is(err, unix.ENOTSUP) {
		t.Fatal(err)
	}
	var out []string
	for _, n := range strings.Split(string(names), "\x00") {
		if n == "" {
			continue
		}
		v, err := readSized(func(b []byte) (int, error) { return unix.Lgetxattr(p, n, b) })
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s=%x", n, v))
	}
	sort.Strings(out)
	return "[" + strings.Join(out, " ") + "]"
}

func same(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	for _, d := range disktree.Diff(want, got) {
		t.Errorf("%s: %s", what, d)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(content), mode))
	must(t, os.Chmod(p, mode))
}

// setTimesOf gives p (never followed) an access time older than its
// modification time, both with nanoseconds, so that any read through a
// relatime mount would change the access time and show up in describe.
func setTimesOf(t *testing.T, p string, seed int64) {
	t.Helper()
	ts := []unix.Timespec{
		{Sec: 1_500_000_000 + seed, Nsec: 123_456_789},
		{Sec: 1_600_000_000 + seed, Nsec: 987_654_321 - seed},
	}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
}

// setTimesTree applies setTimesOf to every entry under root, deepest first
// so that no later change moves a directory's times.
func setTimesTree(t *testing.T, root string) {
	t.Helper()
	var paths []string
	must(t, filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		paths = append(paths, p)
		return err
	}))
	for i := len(paths) - 1; i >= 0; i-- {
		setTimesOf(t, paths[i], int64(i))
	}
}

// buildTree makes, under root, one of everything Copy must preserve.
func buildTree(t *testing.T, root string) {
	t.Helper()
	must(t, os.Mkdir(root, 0o755))
	write(t, filepath.Join(root, "plain"), "plain file\n", 0o644)
	write(t, filepath.Join(root, "private"), "secret of the volume\n", 0o600)
	write(t, filepath.Join(root, "nothing"), "unreadable", 0)
	write(t, filepath.Join(root, "empty"), "", 0o640)
	write(t, filepath.Join(root, "bin", "setuid"), "#!/bin/sh\n", 0o4755)
	write(t, filepath.Join(root, "bin", "setgid"), "#!/bin/sh\n", 0o2711)
	write(t, filepath.Join(root, "bin", "capable"), "cap", 0o755)
	must(t, os.MkdirAll(filepath.Join(root, "shared", "tmp"), 0o755))
	must(t, os.Chmod(filepath.Join(root, "shared", "tmp"), 0o1777))
	must(t, os.Mkdir(filepath.Join(root, "team"), 0o755))
	must(t, os.Chmod(filepath.Join(root, "team"), 0o2770))
	must(t, os.Mkdir(filepath.Join(root, "closed"), 0o700))
	write(t, filepath.Join(root, "closed", "inner"), "inside a closed directory", 0o644)
	must(t, os.MkdirAll(filepath.Join(root, "empty-dir"), 0o755))
	write(t, filepath.Join(root, "team", "owned"), "owned by someone else", 0o664)
	for _, p := range []string{"team", "team/owned", "bin/setgid"} {
		must(t, os.Lchown(filepath.Join(root, p), 1234, 5678))
	}
	// Lchown cleared the setgid bit; set it again.
	must(t, os.Chmod(filepath.Join(root, "bin", "setgid"), 0o2711|os.ModeSetgid))
	must(t, unix.Chmod(filepath.Join(root, "bin", "setgid"), 0o2711))
	must(t, unix.Chmod(filepath.Join(root, "team"), 0o2770))

	// Hard links: three names, one inode, in different directories.
	write(t, filepath.Join(root, "links", "a"), "one inode, three names", 0o644)
	must(t, os.Link(filepath.Join(root, "links", "a"), filepath.Join(root, "links", "b")))
	must(t, os.Link(filepath.Join(root, "links", "a"), filepath.Join(root, "closed", "c")))

	// Symbolic links, none of which may be followed.
	must(t, os.Symlink("plain", filepath.Join(root, "rel-link")))
	must(t, os.Symlink("/etc", filepath.Join(root, "etc")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(root, "passwd")))
	must(t, os.Symlink("does/not/exist", filepath.Join(root, "dangling")))
	must(t, os.Symlink("../..", filepath.Join(root, "shared", "up")))
	must(t, os.Lchown(filepath.Join(root, "rel-link"), 1234, 5678))

	// Special files.
	must(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o620))
	must(t, unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Mknod(filepath.Join(root, "loop"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 0))))
	must(t, unix.Mknod(filepath.Join(root, "sock"), unix.S_IFSOCK|0o755, 0))
	must(t, os.Lchown(filepath.Join(root, "fifo"), 42, 43))

	// Extended attributes of every namespace, on every kind of entry.
	xattrs := []struct{ path, name, value string }{
		{".", "user.root", "on the root"},
		{"plain", "user.mime", "text/plain"},
		{"plain", "trusted.origin", "t"},
		{"plain", "security.label", "s"},
		{"closed", "user.dir", "on a directory"},
		{"bin/capable", "security.capability", "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"},
		{"etc", "trusted.on-a-link", "link attribute"},
		{"fifo", "trusted.on-a-fifo", "fifo attribute"},
		{"empty", "user.empty", ""},
	}
	for _, x := range xattrs {
		must(t, unix.Lsetxattr(filepath.Join(root, x.path), x.name, []byte(x.value), 0))
	}
	must(t, unix.Setxattr(filepath.Join(root, "team", "owned"), "system.posix_acl_access", posixACL(), 0))
	must(t, unix.Setxattr(filepath.Join(root, "team"), "system.posix_acl_default", posixACL(), 0))
	setTimesTree(t, root)
}

func TestCopyPreserves(t *testing.T) {
	for _, k := range kinds {
		t.Run(string(k), func(t *testing.T) {
			mnt := testfs.Mount(t, k, fsSize)
			src, dst := filepath.Join(mnt, "src"), filepath.Join(mnt, "dst")
			buildTree(t, src)
			write(t, filepath.Join(mnt, "beside", "file"), "next to the source", 0o644)
			setTimesTree(t, filepath.Join(mnt, "beside"))
			want := describe(t, src)
			around := describe(t, filepath.Join(mnt, "beside"))

			st, err := Copy(src, dst)
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			same(t, "copy", want, describe(t, dst))
			same(t, "source after the copy", want, describe(t, src))
			same(t, "beside the source", around, describe(t, filepath.Join(mnt, "beside")))

			wantStats := Stats{Dirs: 8, Files: 10, HardLinks: 2, Symlinks: 5, Specials: 4}
			if k == testfs.XFS {
				wantStats.Reflinked = wantStats.Files
			} else {
				wantStats.Copied = wantStats.Files
			}
			wantStats.Bytes = st.Bytes
			if st != wantStats {
				t.Errorf("Stats = %+v, want %+v", st, wantStats)
			}
			if st.Bytes <= 0 {
				t.Errorf("Stats.Bytes = %d", st.Bytes)
			}
		})
	}
}

// A copy between filesystems cannot share data: FICLONE fails with EXDEV
// and every file falls back to a plain copy.
func TestCopyAcrossFilesystems(t *testing.T) {
	from := testfs.Mount(t, testfs.XFS, fsSize)
	to := testfs.Mount(t, testfs.Ext4, fsSize)
	src := filepath.Join(from, "src")
	buildTree(t, src)
	want := describe(t, src)
	st, err := Copy(src, filepath.Join(to, "dst"))
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	same(t, "copy", want, describe(t, filepath.Join(to, "dst")))
	if st.Reflinked != 0 || st.Copied != st.Files || st.Files == 0 {
		t.Errorf("Stats = %+v, want every file copied", st)
	}
}

// Link times are checked apart: reading a link, as describe must, sets its
// access time.
func TestCopyLinkTimes(t *testing.T) {
	for _, k := range kinds {
		t.Run(string(k), func(t *testing.T) {
			mnt := testfs.Mount(t, k, fsSize)
			src := filepath.Join(mnt, "src")
			must(t, os.MkdirAll(filepath.Join(src, "d"), 0o755))
			must(t, os.Symlink("/etc", filepath.Join(src, "d", "link")))
			setTimesTree(t, src)
			var want unix.Stat_t
			must(t, unix.Lstat(filepath.Join(src, "d", "link"), &want))
			if _, err := Copy(src, filepath.Join(mnt, "dst")); err != nil {
				t.Fatalf("Copy: %v", err)
			}
			var got unix.Stat_t
			must(t, unix.Lstat(filepath.Join(mnt, "dst", "d", "link"), &got))
			if got.Atim != want.Atim || got.Mtim != want.Mtim {
				t.Errorf("link times: atime %v mtime %v, want %v %v", got.Atim, got.Mtim, want.Atim, want.Mtim)
			}
		})
	}
}

func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	d, err := disktree.Describe(root)
	must(t, err)
	return d
}
