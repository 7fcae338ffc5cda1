package loopdev

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// List returns every bound loop device of the host, whoever attached it,
// sorted by device number.
func (l *Loops) List() ([]Device, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("list loop devices: %w", err)
	}
	var out []Device
	for _, e := range entries {
		name := e.Name()
		if !loopName.MatchString(name) {
			continue
		}
		d, ok, err := l.describe(name)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return number(out[i].Name()) < number(out[j].Name()) })
	return out, nil
}

// Find returns the loop devices bound to file, compared by device and
// inode number so that another path to the same file (a bind mount, a
// symbolic link) finds them too. A missing file has none.
func (l *Loops) Find(file string) ([]Device, error) {
	var st unix.Stat_t
	if err := unix.Stat(file, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("find loop devices of %s: %w", file, err)
	}
	all, err := l.List()
	if err != nil {
		return nil, err
	}
	var out []Device
	for _, d := range all {
		if d.fileDev == st.Dev && d.fileIno == st.Ino {
			out = append(out, d)
		}
	}
	return out, nil
}

// At returns the loop device whose node is at path: /dev/loopN itself, or
// a file where such a node is bind-mounted. ok is false when path is not a
// bound loop device.
func (l *Loops) At(path string) (d Device, ok bool, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return Device{}, false, nil
		}
		return Device{}, false, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return Device{}, false, nil
	}
	link, err := os.Readlink(filepath.Join(sysDevBlock, fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))))
	if errors.Is(err, fs.ErrNotExist) {
		return Device{}, false, nil
	}
	if err != nil {
		return Device{}, false, fmt.Errorf("which block device is at %s: %w", path, err)
	}
	name := filepath.Base(link)
	if !loopName.MatchString(name) {
		return Device{}, false, nil
	}
	return l.describe(name)
}

// describe reads what the kernel says of loop device name; ok is false when
// it is not bound.
func (l *Loops) describe(name string) (d Device, ok bool, err error) {
	dir := filepath.Join(sysBlock, name, "loop")
	backing, err := os.ReadFile(filepath.Join(dir, "backing_file"))
	if errors.Is(err, fs.ErrNotExist) {
		return Device{}, false, nil
	}
	if err != nil {
		return Device{}, false, fmt.Errorf("read the backing file of %s: %w", l.devPath(name), err)
	}
	d.Path = l.devPath(name)
	d.BackingFile = strings.TrimSuffix(string(backing), "\n")
	if strings.HasSuffix(d.BackingFile, deletedSuffix) {
		d.BackingFile, d.Deleted = strings.TrimSuffix(d.BackingFile, deletedSuffix), true
	}
	d.Autoclear = sysFlag(filepath.Join(dir, "autoclear"))
	d.DirectIO = sysFlag(filepath.Join(dir, "dio"))
	d.ReadOnly = sysFlag(filepath.Join(sysBlock, name, "ro"))

	// sysfs has the path, not the identity of the file: LOOP_GET_STATUS64.
	fd, created, err := l.openDevice(name, unix.O_RDONLY)
	if errors.Is(err, unix.ENXIO) {
		// Being detached.
		return Device{}, false, nil
	}
	if err != nil {
		return Device{}, false, err
	}
	info, err := unix.IoctlLoopGetStatus64(fd)
	closeFD(fd)
	if errors.Is(err, unix.ENXIO) {
		return Device{}, false, nil
	}
	if err != nil {
		return Device{}, false, fmt.Errorf("status of %s: %w", d.Path, err)
	}
	d.fileDev, d.fileIno = info.Device, info.Inode
	d.NodeCreated = created
	return d, true, nil
}

func sysFlag(p string) bool {
	b, err := os.ReadFile(p)
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

func number(name string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(name, "loop"))
	return n
}
