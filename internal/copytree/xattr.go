package copytree

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

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
