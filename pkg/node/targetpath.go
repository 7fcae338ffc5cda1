//go:build linux

package node

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// A target path comes from the CO, but the directories along it are the
// kubelet's and, below the pod directory, reachable from inside pods. A pod
// that can plant a symbolic link there (T/x -> /etc) must not get a volume
// mounted over, or a file deleted in, the place the link points to. So a
// target is opened one component at a time without following any symbolic
// link, and everything the node service then does to it (mount, unmount,
// remove) goes through the opened descriptors, never through the path
// again: what was checked is what is acted on.

var (
	// errSymlink means a component of a target path is a symbolic link.
	errSymlink = errors.New("symbolic link in target path")
	// errNotDir means a component of a target path before the last is not
	// a directory.
	errNotDir = errors.New("not a directory in target path")
)

// openFlags open a path component for reference only, never following a
// link in its place.
const openFlags = unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openedTarget is a target path opened without following symbolic links.
type openedTarget struct {
	// path is the cleaned absolute path.
	path string
	// parent is the directory holding the last component.
	parent *os.File
	// name is the last component.
	name string
	// file is the target itself, nil when it does not exist.
	file *os.File
	// st describes file when it is set.
	st unix.Stat_t
	// dirs describes every directory from the root to parent.
	dirs []unix.Stat_t
}

// Close releases the descriptors.
func (t *openedTarget) Close() {
	if t.file != nil {
		t.file.Close()
	}
	if t.parent != nil {
		t.parent.Close()
	}
}

// isDir reports whether the target exists and is a directory.
func (t *openedTarget) isDir() bool { return t.file != nil && t.st.Mode&unix.S_IFMT == unix.S_IFDIR }

// reopen opens the last component again, as it is now: after a mount or
// unmount the name shows another file than before.
func (t *openedTarget) reopen() error {
	f, st, err := openComponent(t.parent, t.name)
	if t.file != nil {
		t.file.Close()
		t.file = nil
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil:
		return err
	}
	t.file, t.st = f, st
	return nil
}

// openTarget opens path, an absolute cleaned path, without following
// symbolic links in any component. With mkParents the missing directories
// above the last component are created (mode targetMode); otherwise a
// missing one answers an error wrapping unix.ENOENT. A missing last
// component is not an error: file is then nil. A symbolic link anywhere is
// errSymlink, a component that is not a directory errNotDir.
func openTarget(path string, mkParents bool) (*openedTarget, error) {
	comps := strings.Split(strings.Trim(path, "/"), "/")
	if path == "/" || len(comps) == 0 || comps[0] == "" {
		return nil, fmt.Errorf("target %s: %w", path, unix.EINVAL)
	}
	dir, err := os.OpenFile("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var dirs []unix.Stat_t
	var rootSt unix.Stat_t
	if err := unix.Fstat(int(dir.Fd()), &rootSt); err != nil {
		dir.Close()
		return nil, err
	}
	dirs = append(dirs, rootSt)
	walked := "/"
	for _, c := range comps[:len(comps)-1] {
		walked = joinPath(walked, c)
		next, st, err := openComponent(dir, c)
		if errors.Is(err, unix.ENOENT) && mkParents {
			if err = unix.Mkdirat(int(dir.Fd()), c, targetMode); err != nil && !errors.Is(err, unix.EEXIST) {
				dir.Close()
				return nil, fmt.Errorf("create directory %s: %w", walked, err)
			}
			next, st, err = openComponent(dir, c)
		}
		dir.Close()
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", walked, err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
		case unix.S_IFLNK:
			next.Close()
			return nil, fmt.Errorf("%s: %w", walked, errSymlink)
		default:
			next.Close()
			return nil, fmt.Errorf("%s: %w", walked, errNotDir)
		}
		dir = next
		dirs = append(dirs, st)
	}
	t := &openedTarget{path: path, parent: dir, name: comps[len(comps)-1], dirs: dirs}
	if err := t.reopen(); err != nil {
		t.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if t.file != nil && t.st.Mode&unix.S_IFMT == unix.S_IFLNK {
		t.Close()
		return nil, fmt.Errorf("%s: %w", path, errSymlink)
	}
	return t, nil
}

// openComponent opens name in dir without following a symbolic link: one
// in its place is opened itself (O_PATH|O_NOFOLLOW) and shows as S_IFLNK.
// openat2 with RESOLVE_NO_SYMLINKS also refuses links the kernel would meet
// inside name (there are none in one component, but the kernel then checks
// it rather than this function); where openat2 is missing, plain openat with
// the same flags does the same for one component.
func openComponent(dir *os.File, name string) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Openat2(int(dir.Fd()), name, &unix.OpenHow{
		Flags:   openFlags,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_BENEATH,
	})
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		// No openat2 (before Linux 5.6), or a seccomp filter that refuses it.
		fd, err = unix.Openat(int(dir.Fd()), name, openFlags, 0)
	}
	if errors.Is(err, unix.ELOOP) {
		return nil, st, errSymlink
	}
	if err != nil {
		return nil, st, err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, st, err
	}
	return os.NewFile(uintptr(fd), name), st, nil
}

func joinPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// sameInode reports whether two stats describe the same file.
func sameInode(a, b *unix.Stat_t) bool { return a.Dev == b.Dev && a.Ino == b.Ino }
