package copytree

import (
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// openFlags are added to every open of a source or destination entry.
const openFlags = unix.O_NOFOLLOW | unix.O_CLOEXEC

// openDir opens the directory name in dirfd for reading, never following a
// link at name.
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
	defer closeFD(pfd)
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

// closeFD closes a descriptor whose close error carries nothing actionable:
// it was only read, or was synced before.
func closeFD(fd int) { _ = unix.Close(fd) }
