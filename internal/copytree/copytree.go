// Package copytree copies a directory tree so that the copy can stand in for
// the original: a volume's snapshot, or a volume restored or cloned from one.
//
// What is preserved, for every entry: type, permission bits including
// setuid, setgid and sticky, owner and group, access and modification times
// to the nanosecond (of directories and symbolic links too), and extended
// attributes (user.*, security.*, trusted.* when the caller may read them,
// and POSIX ACLs, which are system.posix_acl_* attributes). Files that share
// an inode in the source share one in the copy. Symbolic links are copied as
// links and never followed. FIFOs, sockets and device nodes are made again
// with mknod, like cp -a does; a device node needs CAP_MKNOD, and without it
// the copy fails naming the entry. Change times (ctime) cannot be set and
// are not preserved.
//
// File data is shared with the source through FICLONE where the filesystem
// can (XFS with reflink, btrfs): the copy is instant and takes no space until
// either side is written. Elsewhere it is copied with copy_file_range (or
// read and write), visiting only the data regions that SEEK_DATA and
// SEEK_HOLE report, so that sparse files stay sparse. The choice is made per
// file: a file FICLONE refuses is copied.
//
// The source is untrusted: it is a volume that a workload writes while it
// is copied. Every directory is opened relative to its already-open parent
// with O_NOFOLLOW, one path element at a time, so renames or symbolic links
// made inside the source while the copy runs cannot lead the copy outside
// it: nothing outside the source is read and nothing outside the destination
// is written. A regular file is opened for reading only once it is known to
// be one, so a device node swapped in mid-copy is never opened. Entries on
// another mount (another filesystem, or a bind mount, even of the source's
// own filesystem) are not copied and are counted in Stats.MountsSkipped.
// Entries that vanish during the copy are skipped; one that changes type
// between being listed and being opened fails the copy, which can be
// retried. A file written during the copy is copied as it was when FICLONE
// ran (which is atomic per file) or, with a plain copy, with whatever mix of
// old and new data the copy saw. The source is read with O_NOATIME, so its
// access times stay as they were, but for those of symbolic links, which
// reading a link sets.
package copytree

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Stats says what a copy did, for logs and benchmarks.
type Stats struct {
	// Dirs is the number of directories made, the root included.
	Dirs int64
	// Files is the number of regular files made (inodes, not names).
	Files int64
	// HardLinks is the number of further names given to files already
	// made, because they share an inode in the source.
	HardLinks int64
	// Symlinks is the number of symbolic links made.
	Symlinks int64
	// Specials is the number of FIFOs, sockets and device nodes made.
	Specials int64
	// Bytes is the total length of the regular files made, holes included.
	Bytes int64
	// Reflinked is the number of files whose data is shared with the
	// source (FICLONE).
	Reflinked int64
	// Copied is the number of files whose data was copied. Reflinked +
	// Copied == Files.
	Copied int64
	// XattrsSkipped counts extended attributes that the destination
	// filesystem does not support (ENOTSUP) and that were therefore not
	// copied. Callers should report a non-zero count as a warning.
	XattrsSkipped int64
	// MountsSkipped counts entries that are on another filesystem than
	// the source's root (a mount inside the source); they are not copied.
	MountsSkipped int64
}

// Copy copies the directory tree src to dst, which must not exist; its
// parent must. src itself must be a directory, not a symbolic link to one.
// On error dst is left partly made, and the caller removes it.
func Copy(src, dst string) (Stats, error) {
	var c copier
	sfd, err := openDir(unix.AT_FDCWD, src)
	if err != nil {
		return c.stats, fmt.Errorf("open source %s: %w", src, err)
	}
	defer unix.Close(sfd)
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return c.stats, fmt.Errorf("stat source %s: %w", src, err)
	}
	c.dev = st.Dev
	c.mnt, c.haveMnt = mountID(sfd)
	if err := unix.Mkdir(dst, 0o700); err != nil {
		return c.stats, fmt.Errorf("create %s: %w", dst, err)
	}
	dfd, err := openDir(unix.AT_FDCWD, dst)
	if err != nil {
		return c.stats, fmt.Errorf("open %s: %w", dst, err)
	}
	defer unix.Close(dfd)
	c.dstRoot = dfd
	c.stats.Dirs++
	if err := c.copyDir(sfd, dfd, "."); err != nil {
		return c.stats, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := c.finishDir(sfd, dfd, &st, unix.AT_FDCWD, dst); err != nil {
		return c.stats, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return c.stats, nil
}

// CanReflink reports whether files in dir can share data through FICLONE,
// by trying it on two scratch files that it removes again.
func CanReflink(dir string) (bool, error) {
	a, err := os.CreateTemp(dir, ".reflink-probe-*")
	if err != nil {
		return false, err
	}
	defer os.Remove(a.Name())
	defer a.Close()
	b, err := os.CreateTemp(dir, ".reflink-probe-*")
	if err != nil {
		return false, err
	}
	defer os.Remove(b.Name())
	defer b.Close()
	if _, err := a.Write(make([]byte, 4096)); err != nil {
		return false, err
	}
	err = unix.IoctlFileClone(int(b.Fd()), int(a.Fd()))
	switch {
	case err == nil:
		return true, nil
	case cloneUnsupported(err):
		return false, nil
	}
	return false, fmt.Errorf("FICLONE in %s: %w", dir, err)
}

type fileID struct{ dev, ino uint64 }

type copier struct {
	stats Stats
	// dev and mnt are the source root's device and mount; entries on
	// others (mounted inside the source, bind mounts of the source's own
	// filesystem included) are skipped. haveMnt is false on kernels that
	// do not report mount IDs.
	dev     uint64
	mnt     uint64
	haveMnt bool
	// dstRoot is the destination root, which links are relative to.
	dstRoot int
	// links maps a multiply-linked source inode to the destination path
	// (relative to dstRoot) of its first copy.
	links map[fileID]string
	// noClone is set once FICLONE has failed in a way that holds for the
	// whole destination (no support, different filesystems).
	noClone bool
	// noCopyRange is set once copy_file_range has failed the same way.
	noCopyRange bool
	buf         []byte
}

// openFlags are added to every open of a source or destination entry.
const openFlags = unix.O_NOFOLLOW | unix.O_CLOEXEC

func openDir(dirfd int, name string) (int, error) {
	return openNoAtime(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|openFlags)
}

// openNoAtime opens with O_NOATIME, so that copying does not change the
// source's access times, where the caller may (owner or CAP_FOWNER).
func openNoAtime(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_NOATIME, 0)
		if errors.Is(err, unix.EPERM) {
			fd, err = unix.Openat(dirfd, name, flags, 0)
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return fd, err
	}
}

// copyDir copies the entries of the open source directory sfd into the open
// destination directory dfd; rel is dfd's path relative to the root.
func (c *copier) copyDir(sfd, dfd int, rel string) error {
	names, err := readNames(sfd)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", rel, err)
	}
	for _, name := range names {
		var st unix.Stat_t
		err := unix.Fstatat(sfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			continue // removed since the directory was read
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", path.Join(rel, name), err)
		}
		if st.Dev != c.dev {
			c.stats.MountsSkipped++
			continue
		}
		entry := path.Join(rel, name)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			err = c.copySubdir(sfd, dfd, name, entry)
		case unix.S_IFREG:
			err = c.copyFile(sfd, dfd, name, entry)
		case unix.S_IFLNK:
			err = c.copySymlink(sfd, dfd, name, &st)
		default:
			err = c.copySpecial(sfd, dfd, name, &st)
		}
		if errors.Is(err, errVanished) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", entry, err)
		}
	}
	return nil
}

// openRegular opens the regular file name in dirfd for reading. The entry is
// first opened with O_PATH, which opens nothing: only once it is known to be
// a regular file is it opened for reading, through /proc/self/fd, which
// reaches that very inode. Opening a device node or FIFO that a workload
// swapped in since the entry was listed could have effects of its own (a
// watchdog device, a tape that rewinds); this never does that.
func openRegular(dirfd int, name string) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	pfd, err := unix.Openat(dirfd, name, unix.O_PATH|openFlags, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return -1, st, errVanished
	case err != nil:
		return -1, st, fmt.Errorf("open: %w", err)
	}
	defer unix.Close(pfd)
	if err := unix.Fstat(pfd, &st); err != nil {
		return -1, st, fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, st, errChanged
	}
	fd, err := openNoAtime(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return -1, st, fmt.Errorf("open: %w", err)
	}
	return fd, st, nil
}

// foreign reports whether the open entry fd, whose stat is st, is on another
// filesystem or mount than the source's root.
func (c *copier) foreign(fd int, st *unix.Stat_t) bool {
	if st.Dev != c.dev {
		return true
	}
	if !c.haveMnt {
		return false
	}
	id, ok := mountID(fd)
	return ok && id != c.mnt
}

// mountID returns the ID of the mount that fd was opened through.
func mountID(fd int) (uint64, bool) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil {
		return 0, false
	}
	return stx.Mnt_id, stx.Mask&unix.STATX_MNT_ID != 0
}

// errVanished means an entry was removed between listing and opening it.
var errVanished = errors.New("entry vanished during the copy")

// errChanged means an entry was replaced by one of another type between
// listing and opening it.
var errChanged = errors.New("entry changed type during the copy; retry")

func readNames(fd int) ([]string, error) {
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return nil, err
	}
	buf := make([]byte, 32<<10)
	var names []string
	for {
		n, err := unix.ReadDirent(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

func (c *copier) copySubdir(sparent, dparent int, name, rel string) error {
	sfd, err := openDir(sparent, name)
	switch {
	case errors.Is(err, unix.ENOENT):
		return errVanished
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
		return errChanged
	case err != nil:
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(sfd)
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if c.foreign(sfd, &st) {
		c.stats.MountsSkipped++
		return nil
	}
	if err := unix.Mkdirat(dparent, name, 0o700); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	dfd, err := openDir(dparent, name)
	if err != nil {
		return fmt.Errorf("open new directory: %w", err)
	}
	defer unix.Close(dfd)
	c.stats.Dirs++
	if err := c.copyDir(sfd, dfd, rel); err != nil {
		return err
	}
	return c.finishDir(sfd, dfd, &st, dparent, name)
}

// finishDir gives a filled destination directory its source's attributes.
// Its times are set last, as filling it changed them.
func (c *copier) finishDir(sfd, dfd int, st *unix.Stat_t, dparent int, name string) error {
	if err := unix.Fchown(dfd, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("set owner: %w", err)
	}
	if err := c.copyXattrs(fdXattrs(sfd), fdXattrs(dfd)); err != nil {
		return err
	}
	if err := unix.Fchmod(dfd, st.Mode&07777); err != nil {
		return fmt.Errorf("set mode: %w", err)
	}
	return setTimes(dparent, name, st)
}

func setTimes(dirfd int, name string, st *unix.Stat_t) error {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

func (c *copier) copyFile(sparent, dparent int, name, rel string) error {
	sfd, st, err := openRegular(sparent, name)
	if err != nil {
		return err
	}
	defer unix.Close(sfd)
	if c.foreign(sfd, &st) {
		c.stats.MountsSkipped++
		return nil
	}
	id := fileID{dev: st.Dev, ino: st.Ino}
	if st.Nlink > 1 {
		if first, ok := c.links[id]; ok {
			if err := unix.Linkat(c.dstRoot, first, dparent, name, 0); err != nil {
				return fmt.Errorf("link to %s: %w", first, err)
			}
			c.stats.HardLinks++
			return nil
		}
	}
	dfd, err := unix.Openat(dparent, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|openFlags, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	defer unix.Close(dfd)
	if err := c.copyData(dfd, sfd, st.Size); err != nil {
		return err
	}
	c.stats.Files++
	c.stats.Bytes += st.Size
	// Owner before mode: chown clears setuid and setgid. Extended
	// attributes after the data and the owner, as writing and chown clear
	// security.capability.
	if err := unix.Fchown(dfd, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("set owner: %w", err)
	}
	if err := c.copyXattrs(fdXattrs(sfd), fdXattrs(dfd)); err != nil {
		return err
	}
	if err := unix.Fchmod(dfd, st.Mode&07777); err != nil {
		return fmt.Errorf("set mode: %w", err)
	}
	if err := setTimes(dparent, name, &st); err != nil {
		return err
	}
	if st.Nlink > 1 {
		if c.links == nil {
			c.links = make(map[fileID]string)
		}
		c.links[id] = rel
	}
	return nil
}

// copyData fills the new, empty file dfd with the size bytes of sfd.
func (c *copier) copyData(dfd, sfd int, size int64) error {
	if !c.noClone {
		err := unix.IoctlFileClone(dfd, sfd)
		if err == nil {
			c.stats.Reflinked++
			return nil
		}
		if !cloneUnsupported(err) {
			return fmt.Errorf("clone data: %w", err)
		}
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOTTY) {
			c.noClone = true // a property of the filesystems, not of the file
		}
	}
	if err := unix.Ftruncate(dfd, size); err != nil {
		return fmt.Errorf("set length: %w", err)
	}
	for off := int64(0); off < size; {
		start, err := unix.Seek(sfd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if errors.Is(err, unix.EINVAL) {
			// No SEEK_DATA here: copy everything.
			if err := c.copyRange(dfd, sfd, off, size-off); err != nil {
				return err
			}
			break
		}
		if err != nil {
			return fmt.Errorf("find data: %w", err)
		}
		end, err := unix.Seek(sfd, start, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("find hole: %w", err)
		}
		if end > size {
			end = size // the file grew since it was measured
		}
		if end <= start {
			break
		}
		if err := c.copyRange(dfd, sfd, start, end-start); err != nil {
			return err
		}
		off = end
	}
	c.stats.Copied++
	return nil
}

// cloneUnsupported reports whether a FICLONE failure means "copy instead".
func cloneUnsupported(err error) bool {
	for _, e := range []error{unix.EOPNOTSUPP, unix.EXDEV, unix.EINVAL, unix.ENOTTY, unix.ENOSYS} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// copyRange copies n bytes at off from sfd to the same place in dfd. It
// stops early, without error, when the source is shorter than expected
// because it was truncated during the copy.
func (c *copier) copyRange(dfd, sfd int, off, n int64) error {
	soff, doff := off, off
	for n > 0 && !c.noCopyRange {
		chunk := int(min(n, 1<<30))
		w, err := unix.CopyFileRange(sfd, &soff, dfd, &doff, chunk, 0)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EXDEV), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL):
			c.noCopyRange = true
		case err != nil:
			return fmt.Errorf("copy data: %w", err)
		case w == 0:
			return nil
		default:
			n -= int64(w)
		}
	}
	if n <= 0 {
		return nil
	}
	if c.buf == nil {
		c.buf = make([]byte, 1<<20)
	}
	for n > 0 {
		r, err := unix.Pread(sfd, c.buf[:min(n, int64(len(c.buf)))], soff)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read data: %w", err)
		}
		if r == 0 {
			return nil
		}
		for done := 0; done < r; {
			w, err := unix.Pwrite(dfd, c.buf[done:r], doff)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("write data: %w", err)
			}
			done += w
			doff += int64(w)
		}
		soff += int64(r)
		n -= int64(r)
	}
	return nil
}

func (c *copier) copySymlink(sparent, dparent int, name string, st *unix.Stat_t) error {
	target, err := readlinkat(sparent, name, st.Size)
	if errors.Is(err, unix.ENOENT) {
		return errVanished
	}
	if err != nil {
		return fmt.Errorf("read link: %w", err)
	}
	if err := unix.Symlinkat(target, dparent, name); err != nil {
		return fmt.Errorf("create link: %w", err)
	}
	c.stats.Symlinks++
	return c.finishNode(sparent, dparent, name, st, false)
}

func (c *copier) copySpecial(sparent, dparent int, name string, st *unix.Stat_t) error {
	if err := unix.Mknodat(dparent, name, st.Mode&^07777|0o600, int(st.Rdev)); err != nil {
		what := "FIFO"
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR, unix.S_IFBLK:
			what = "device node (needs CAP_MKNOD)"
		case unix.S_IFSOCK:
			what = "socket"
		}
		return fmt.Errorf("create %s: %w", what, err)
	}
	c.stats.Specials++
	return c.finishNode(sparent, dparent, name, st, true)
}

// finishNode gives a new link or special file its source's attributes
// without opening it: it is addressed by name in its parent, never followed.
func (c *copier) finishNode(sparent, dparent int, name string, st *unix.Stat_t, chmod bool) error {
	if err := unix.Fchownat(dparent, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set owner: %w", err)
	}
	err := c.copyXattrs(pathXattrs(sparent, name), pathXattrs(dparent, name))
	if errors.Is(err, unix.ENOENT) {
		return errVanished
	}
	if err != nil {
		return err
	}
	if chmod {
		// Not a symbolic link (they have no mode of their own), so
		// fchmodat reaches the node just made.
		if err := unix.Fchmodat(dparent, name, st.Mode&07777, 0); err != nil {
			return fmt.Errorf("set mode: %w", err)
		}
	}
	return setTimes(dparent, name, st)
}

func readlinkat(dirfd int, name string, size int64) (string, error) {
	n := int(size) + 1
	if n < 128 {
		n = 128
	}
	for {
		buf := make([]byte, n)
		got, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if got < len(buf) {
			return string(buf[:got]), nil
		}
		n *= 2
	}
}

// xattrs addresses one inode's extended attributes: by descriptor for files
// and directories, by name in an open directory (through /proc/self/fd, so
// the name is resolved in that directory and its last element is not
// followed) for links and special files, which cannot be opened safely.
type xattrs struct {
	fd   int
	path string
}

func fdXattrs(fd int) xattrs { return xattrs{fd: fd} }

func pathXattrs(dirfd int, name string) xattrs {
	return xattrs{fd: -1, path: "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name}
}

func (x xattrs) list(buf []byte) (int, error) {
	if x.fd >= 0 {
		return unix.Flistxattr(x.fd, buf)
	}
	return unix.Llistxattr(x.path, buf)
}

func (x xattrs) get(name string, buf []byte) (int, error) {
	if x.fd >= 0 {
		return unix.Fgetxattr(x.fd, name, buf)
	}
	return unix.Lgetxattr(x.path, name, buf)
}

func (x xattrs) set(name string, val []byte) error {
	if x.fd >= 0 {
		return unix.Fsetxattr(x.fd, name, val, 0)
	}
	return unix.Lsetxattr(x.path, name, val, 0)
}

// copyXattrs copies every extended attribute the caller can read. One the
// destination filesystem does not support is counted in XattrsSkipped.
func (c *copier) copyXattrs(src, dst xattrs) error {
	names, err := readSized(src.list)
	if errors.Is(err, unix.ENOTSUP) {
		return nil // the source filesystem has none
	}
	if err != nil {
		return fmt.Errorf("list extended attributes: %w", err)
	}
	for _, name := range strings.Split(string(names), "\x00") {
		if name == "" {
			continue
		}
		val, err := readSized(func(b []byte) (int, error) { return src.get(name, b) })
		if errors.Is(err, unix.ENODATA) {
			continue // removed since listed
		}
		if err != nil {
			return fmt.Errorf("read extended attribute %s: %w", name, err)
		}
		err = dst.set(name, val)
		if errors.Is(err, unix.ENOTSUP) {
			c.stats.XattrsSkipped++
			continue
		}
		if err != nil {
			return fmt.Errorf("write extended attribute %s: %w", name, err)
		}
	}
	return nil
}

// readSized calls f with a buffer large enough for its answer, retrying when
// the answer grew between asking its size and reading it.
func readSized(f func([]byte) (int, error)) ([]byte, error) {
	for {
		n, err := f(nil)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		buf := make([]byte, n)
		n, err = f(buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
