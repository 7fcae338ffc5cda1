package copytree

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
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

// posixACL encodes a POSIX access ACL as the kernel stores it in
// system.posix_acl_access: owner rwx, user 1000 r-x, group r-x, mask rwx,
// other r--.
func posixACL() []byte {
	type ent struct {
		tag, perm uint16
		id        uint32
	}
	ents := []ent{{0x01, 7, ^uint32(0)}, {0x02, 5, 1000}, {0x04, 5, ^uint32(0)}, {0x10, 7, ^uint32(0)}, {0x20, 4, ^uint32(0)}}
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range ents {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
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

func randomFile(t testing.TB, p string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	buf := make([]byte, 1<<20)
	for left := size; left > 0; left -= int64(len(buf)) {
		n := min(left, int64(len(buf)))
		_, _ = r.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func freeBytes(t *testing.T, mnt string) int64 {
	t.Helper()
	fd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(fd)
	must(t, unix.Syncfs(fd))
	var st unix.Statfs_t
	must(t, unix.Fstatfs(fd, &st))
	return int64(st.Bfree) * st.Bsize
}

// With reflink the copy of a 64 MiB file takes next to no space; without,
// it takes 64 MiB.
func TestCopyReflinkSharesData(t *testing.T) {
	const size = 64 << 20
	for _, k := range kinds {
		t.Run(string(k), func(t *testing.T) {
			mnt := testfs.Mount(t, k, fsSize)
			src := filepath.Join(mnt, "src")
			must(t, os.Mkdir(src, 0o755))
			randomFile(t, filepath.Join(src, "big"), size, 1)
			before := freeBytes(t, mnt)
			st, err := Copy(src, filepath.Join(mnt, "dst"))
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			used := before - freeBytes(t, mnt)
			if got, want := hashFile(t, filepath.Join(mnt, "dst", "big")), hashFile(t, filepath.Join(src, "big")); string(got) != string(want) {
				t.Fatal("copied content differs")
			}
			switch k {
			case testfs.XFS:
				if st.Reflinked != 1 || st.Copied != 0 {
					t.Errorf("Stats = %+v, want one reflinked file", st)
				}
				if used > 4<<20 {
					t.Errorf("reflink copy of %d MiB used %d KiB of free space", size>>20, used>>10)
				}
			default:
				if st.Reflinked != 0 || st.Copied != 1 {
					t.Errorf("Stats = %+v, want one copied file", st)
				}
				if used < size {
					t.Errorf("plain copy of %d MiB used only %d KiB", size>>20, used>>10)
				}
			}
			if st.Bytes != size {
				t.Errorf("Stats.Bytes = %d, want %d", st.Bytes, size)
			}
			// The copy is independent: writing it leaves the source alone.
			f, err := os.OpenFile(filepath.Join(mnt, "dst", "big"), os.O_WRONLY, 0)
			must(t, err)
			_, err = f.WriteAt([]byte("changed"), 1<<20)
			must(t, err)
			must(t, f.Close())
			if got := hashFile(t, filepath.Join(mnt, "dst", "big")); string(got) == string(hashFile(t, filepath.Join(src, "big"))) {
				t.Error("write to the copy not visible in the copy")
			}
		})
	}
}

// dataRegions lists the [start, end) regions SEEK_DATA and SEEK_HOLE report.
func dataRegions(t *testing.T, p string) [][2]int64 {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY, 0)
	must(t, err)
	defer unix.Close(fd)
	var out [][2]int64
	for off := int64(0); ; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return out
		}
		must(t, err)
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		must(t, err)
		out = append(out, [2]int64{start, end})
		off = end
	}
}

func TestCopyKeepsFilesSparse(t *testing.T) {
	const size = 64 << 20
	for _, k := range kinds {
		t.Run(string(k), func(t *testing.T) {
			mnt := testfs.Mount(t, k, fsSize)
			src := filepath.Join(mnt, "src")
			must(t, os.Mkdir(src, 0o755))
			f, err := os.Create(filepath.Join(src, "sparse"))
			must(t, err)
			must(t, f.Truncate(size))
			for _, off := range []int64{0, 40 << 20, size - 4096} {
				_, err := f.WriteAt([]byte(strings.Repeat("d", 4096)), off)
				must(t, err)
			}
			must(t, f.Sync())
			must(t, f.Close())
			// A file that is all hole.
			must(t, os.WriteFile(filepath.Join(src, "hole"), nil, 0o644))
			must(t, os.Truncate(filepath.Join(src, "hole"), size))
			want := describe(t, src)

			dst := filepath.Join(mnt, "dst")
			if _, err := Copy(src, dst); err != nil {
				t.Fatalf("Copy: %v", err)
			}
			same(t, "copy", want, describe(t, dst))
			for _, name := range []string{"sparse", "hole"} {
				var st unix.Stat_t
				must(t, unix.Stat(filepath.Join(dst, name), &st))
				if st.Size != size || st.Blocks*512 > 4<<20 {
					t.Errorf("%s: size %d, %d KiB allocated; want %d bytes, sparse", name, st.Size, st.Blocks/2, int64(size))
				}
				if k == testfs.Ext4 {
					// A plain copy writes exactly the source's data
					// regions.
					if got, w := dataRegions(t, filepath.Join(dst, name)), dataRegions(t, filepath.Join(src, name)); fmt.Sprint(got) != fmt.Sprint(w) {
						t.Errorf("%s: data regions %v, want %v", name, got, w)
					}
				}
			}
		})
	}
}

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

// A destination filesystem without extended attributes (ramfs) gets the
// rest of the tree; what it cannot hold is counted, not silently dropped.
func TestCopyCountsUnsupportedXattrs(t *testing.T) {
	mnt := testfs.Mount(t, testfs.Ext4, fsSize)
	src := filepath.Join(mnt, "src")
	write(t, filepath.Join(src, "f"), "data", 0o644)
	must(t, unix.Setxattr(filepath.Join(src, "f"), "user.a", []byte("1"), 0))
	must(t, unix.Setxattr(filepath.Join(src, "f"), "user.b", []byte("2"), 0))
	must(t, unix.Setxattr(src, "trusted.c", []byte("3"), 0))
	ram := t.TempDir()
	if err := unix.Mount("none", ram, "ramfs", 0, ""); err != nil {
		t.Skipf("cannot mount ramfs: %v", err)
	}
	t.Cleanup(func() { must(t, unix.Unmount(ram, 0)) })
	st, err := Copy(src, filepath.Join(ram, "dst"))
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if st.XattrsSkipped != 3 || st.Files != 1 {
		t.Errorf("Stats = %+v, want 1 file and 3 skipped extended attributes", st)
	}
	if data, err := os.ReadFile(filepath.Join(ram, "dst", "f")); err != nil || string(data) != "data" {
		t.Errorf("copied file: %q, %v", data, err)
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

func TestCanReflink(t *testing.T) {
	for _, k := range []testfs.Kind{testfs.XFS, testfs.Btrfs, testfs.Ext4} {
		t.Run(string(k), func(t *testing.T) {
			mnt := testfs.Mount(t, k, 0)
			ok, err := CanReflink(mnt)
			if err != nil {
				t.Fatal(err)
			}
			if want := k != testfs.Ext4; ok != want {
				t.Errorf("CanReflink = %v, want %v", ok, want)
			}
			if es, _ := os.ReadDir(mnt); len(es) > 1 { // lost+found on ext4
				t.Errorf("probe files left: %v", es)
			}
		})
	}
}
