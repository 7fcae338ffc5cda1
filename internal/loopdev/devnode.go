package loopdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// nodeMode is the permission of a device node the package creates, as
// udev gives loop devices.
const nodeMode = 0o660

// openMissing opens the node of loop device name after an open found it
// missing, and reports whether it created the node.
//
// A container's /dev is populated when the container starts, so a loop
// device the kernel creates later (LOOP_CTL_GET_FREE adds one when every
// existing device is bound) has no node there. The node is made with the
// device number the kernel gives in sysfs, which is not always 7:N (the
// loop module's max_part spaces the minors out). An existing path is never
// replaced: when another program made it between the failed open and the
// mknod, it is used only if it is a node of the same device.
func (l *Loops) openMissing(name string, mode int) (fd int, created bool, err error) {
	p := l.devPath(name)
	rdev, err := devNumber(name)
	if err != nil {
		return -1, false, fmt.Errorf("open %s: the device node is missing and so is the device in sysfs: %w", p, err)
	}
	major, minor := unix.Major(rdev), unix.Minor(rdev)
	err = unix.Mknod(p, unix.S_IFBLK|nodeMode, int(rdev))
	switch {
	case err == nil:
		created = true
		// mknod applies the umask.
		if err := unix.Chmod(p, nodeMode); err != nil {
			return -1, false, fmt.Errorf("open %s: set the mode of the device node it created: %w", p, err)
		}
	case errors.Is(err, unix.EEXIST):
		// Made meanwhile by another program: use it only if it is this device.
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return -1, false, fmt.Errorf("open %s: %w", p, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != rdev {
			return -1, false, fmt.Errorf("open %s: it was missing, then something other than a node of block device %d:%d (%s) appeared there; it was left as it is, remove it: %w",
				p, major, minor, name, ErrNotLoop)
		}
	default:
		return -1, false, fmt.Errorf("open %s: the device node is missing and creating it (block device %d:%d) failed; in a container, mount the host's /dev or allow mknod of block devices: %w",
			p, major, minor, err)
	}
	fd, err = unix.Open(p, mode|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return -1, false, fmt.Errorf("open %s: %w", p, err)
	}
	return fd, created, nil
}

// devNumber returns the device number of block device name, from
// /sys/block/<name>/dev ("major:minor").
func devNumber(name string) (uint64, error) {
	p := filepath.Join(sysBlock, name, "dev")
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	majorS, minorS, ok := strings.Cut(s, ":")
	major, err1 := strconv.ParseUint(majorS, 10, 32)
	minor, err2 := strconv.ParseUint(minorS, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s holds %.40q, want major:minor", p, s)
	}
	return unix.Mkdev(uint32(major), uint32(minor)), nil
}
