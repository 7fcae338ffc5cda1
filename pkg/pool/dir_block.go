package pool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// createBlock makes block volume id: a directory of mode 0700 holding
// BlockFile, a sparse file of bytes bytes and mode 0600. Like the creation
// of a directory volume it completes what an interrupted attempt began.
func (d *Dir) createBlock(id string, bytes int64) error {
	if bytes <= 0 {
		return fmt.Errorf("block volume %s needs a size, not %d bytes", id, bytes)
	}
	p, err := d.Path(id)
	if err != nil {
		return err
	}
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create volume directory: %w", err)
	}
	if err := markBlockVolume(p); err != nil {
		return err
	}
	if err := growBlockFile(p, bytes, true); err != nil {
		return err
	}
	return syncDir(d.volumes)
}

// markBlockVolume sets blockMarker on the volume directory dir, as the btrfs
// backend does, so that Expand knows a block volume from a directory
// volume without looking at content a workload controls. A filesystem
// without extended attributes gets no marker; Expand then goes by content.
func markBlockVolume(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer closeQuietly(fd)
	err = unix.Fsetxattr(fd, blockMarker, []byte("1"), 0)
	if err != nil && !errors.Is(err, unix.ENOTSUP) {
		return fmt.Errorf("mark %s as a block volume: %w", dir, err)
	}
	return nil
}

// dirIsBlockVolume reports whether the volume directory dir is a block
// volume: it carries blockMarker, or, on a filesystem without extended
// attributes, it holds BlockFile (a regular file with one link) and nothing
// else. A missing dir is ErrNotFound.
func dirIsBlockVolume(dir string) (bool, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return false, fmt.Errorf("%s: %w", dir, ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("open %s: %w", dir, err)
	}
	defer closeQuietly(fd)
	_, err = unix.Fgetxattr(fd, blockMarker, nil)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENODATA):
		return false, nil
	case errors.Is(err, unix.ENOTSUP):
		return holdsOnlyBlockFile(fd, dir)
	}
	return false, fmt.Errorf("read block marker of %s: %w", dir, err)
}

// growBlockFile makes the block file in dir at least bytes long, creating it
// (mode 0600, and dir's mode 0700) when create is set. It never shrinks the
// file. Both are opened without following links.
func growBlockFile(dir string, bytes int64, create bool) error {
	dirfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer closeQuietly(dirfd)
	if create {
		if err := unix.Fchmod(dirfd, 0o700); err != nil {
			return fmt.Errorf("set mode of %s: %w", dir, err)
		}
	}
	fd, err := openBlockFile(dirfd, dir, create)
	if err != nil {
		return err
	}
	defer closeQuietly(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if create {
		if err := unix.Fchmod(fd, 0o600); err != nil {
			return fmt.Errorf("set mode of %s/%s: %w", dir, BlockFile, err)
		}
	}
	if st.Size < bytes {
		if err := unix.Ftruncate(fd, bytes); err != nil {
			return fmt.Errorf("grow %s/%s to %d bytes: %w", dir, BlockFile, bytes, err)
		}
	}
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("fsync %s/%s: %w", dir, BlockFile, err)
	}
	return unix.Fsync(dirfd)
}

// openBlockFile opens dir's block file for writing, creating it when create
// is set. An existing entry is first opened with O_PATH (which opens
// nothing) and checked to be a regular file with one link before it is
// opened for writing through /proc/self/fd, which reaches that very inode:
// whatever a workload may have put at that name (Expand also looks into
// directory volumes) is never followed, and a device node is never opened.
func openBlockFile(dirfd int, dir string, create bool) (int, error) {
	for {
		pfd, err := unix.Openat(dirfd, BlockFile, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			fd, err := unix.Openat(dirfd, BlockFile, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			if errors.Is(err, unix.EEXIST) {
				continue // made since; check what it is
			}
			if err != nil {
				return -1, fmt.Errorf("create %s/%s: %w", dir, BlockFile, err)
			}
			return fd, nil
		}
		if errors.Is(err, unix.ENOENT) {
			return -1, fmt.Errorf("%s holds no %s; it is not a block volume", dir, BlockFile)
		}
		if err != nil {
			return -1, fmt.Errorf("open %s/%s: %w", dir, BlockFile, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(pfd, &st)
		switch {
		case err != nil:
		case st.Mode&unix.S_IFMT != unix.S_IFREG:
			err = fmt.Errorf("%s/%s is not a regular file", dir, BlockFile)
		case st.Nlink != 1:
			err = fmt.Errorf("%s/%s has %d links; a block file has one", dir, BlockFile, st.Nlink)
		}
		if err != nil {
			closeQuietly(pfd)
			return -1, err
		}
		fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), unix.O_WRONLY|unix.O_CLOEXEC, 0)
		closeQuietly(pfd)
		if err != nil {
			return -1, fmt.Errorf("open %s/%s: %w", dir, BlockFile, err)
		}
		return fd, nil
	}
}

// BlockPath implements Pool. It checks that the volume holds a block file,
// so that a caller never attaches anything else to a loop device.
func (d *Dir) BlockPath(id string) (string, error) {
	p, err := d.Path(id)
	if err != nil {
		return "", err
	}
	f := filepath.Join(p, BlockFile)
	fi, err := os.Lstat(f)
	if errors.Is(err, os.ErrNotExist) {
		if _, dirErr := os.Lstat(p); errors.Is(dirErr, os.ErrNotExist) {
			return "", fmt.Errorf("volume %s: %w", id, ErrNotFound)
		}
		return "", fmt.Errorf("volume %s holds no %s; it is not a block volume: %w", id, BlockFile, ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", f)
	}
	return f, nil
}

// Expand implements Pool. A dir pool enforces no sizes, so a directory
// volume has nothing to grow (its reservation lives in the volume core); a
// block volume's file is grown to bytes, never shrunk. Block volumes are
// told apart by their marker (see dirIsBlockVolume).
func (d *Dir) Expand(id string, bytes int64) error {
	p, err := d.Path(id)
	if err != nil {
		return err
	}
	block, err := dirIsBlockVolume(p)
	if err != nil {
		return err
	}
	if !block {
		return nil
	}
	return growBlockFile(p, bytes, false)
}

// holdsOnlyBlockFile reports whether the directory open as fd holds a
// regular file named BlockFile with one link and nothing else.
func holdsOnlyBlockFile(fd int, dir string) (bool, error) {
	// Two names are enough to know; a large directory is not read whole.
	buf := make([]byte, 4096)
	var names []string
	for len(names) < 2 {
		n, err := unix.ReadDirent(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("read %s: %w", dir, err)
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], 2-len(names), names)
	}
	if len(names) != 1 || names[0] != BlockFile {
		return false, nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fd, BlockFile, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, fmt.Errorf("stat %s/%s: %w", dir, BlockFile, err)
	}
	return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink == 1, nil
}

// closeQuietly closes a descriptor whose close error carries nothing
// actionable: it was only read, or was synced before.
func closeQuietly(fd int) { _ = unix.Close(fd) }
