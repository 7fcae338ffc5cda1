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
	defer closeFD(sfd)
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
	defer closeFD(dfd)
	c.dstRoot = dfd
	c.stats.Dirs++
	if err := c.copyDir(sfd, dfd, "."); err != nil {
		return c.stats, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := c.setAttrs(sfd, dfd, &st, unix.AT_FDCWD, dst); err != nil {
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
	defer func() { _ = os.Remove(a.Name()) }()
	defer a.Close()
	b, err := os.CreateTemp(dir, ".reflink-probe-*")
	if err != nil {
		return false, err
	}
	defer func() { _ = os.Remove(b.Name()) }()
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

// errVanished means an entry was removed between listing and opening it.
var errVanished = errors.New("entry vanished during the copy")

// errChanged means an entry was replaced by one of another type between
// listing and opening it.
var errChanged = errors.New("entry changed type during the copy; retry")

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
	defer closeFD(sfd)
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
	defer closeFD(dfd)
	c.stats.Dirs++
	if err := c.copyDir(sfd, dfd, rel); err != nil {
		return err
	}
	return c.setAttrs(sfd, dfd, &st, dparent, name)
}

// setAttrs gives a filled destination file or directory its source's
// attributes. Owner before mode: chown clears setuid and setgid. Extended
// attributes after the data and the owner, as writing and chown clear
// security.capability. Times last, as filling a directory changed them.
func (c *copier) setAttrs(sfd, dfd int, st *unix.Stat_t, dparent int, name string) error {
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
	defer closeFD(sfd)
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
	defer closeFD(dfd)
	if err := c.copyData(dfd, sfd, st.Size); err != nil {
		return err
	}
	c.stats.Files++
	c.stats.Bytes += st.Size
	if err := c.setAttrs(sfd, dfd, &st, dparent, name); err != nil {
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
