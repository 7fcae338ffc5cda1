// Package loopdev attaches regular files to Linux loop devices, finds the
// devices attached to a file, tells a grown file's device its new size and
// detaches devices. It talks to the kernel directly (loop-control and loop
// ioctls, sysfs), so it needs no losetup binary and never parses a tool's
// output; it needs CAP_SYS_ADMIN and the host's /dev. Where /dev is a copy
// made when a container started (a kind node), loop devices the kernel
// creates later have no node there: the package then creates the missing
// node from the device number in sysfs, which needs CAP_MKNOD, and says so
// in Device.NodeCreated.
//
// A Loops holds no state: it is safe for concurrent use, within a process
// and with other programs that allocate loop devices. Between asking
// loop-control for a free device and binding a file to it, another process
// may take the same device; the kernel then answers EBUSY and Attach asks
// for another one.
//
// Devices are attached without autoclear. A bind mount of the device node
// does not hold the device open, so a device attached with autoclear would
// detach as soon as the attaching program closed it, under the bind mounts
// that expose it. Detaching is therefore explicit (Detach), and whoever
// detaches must know that nothing uses the device any more.
package loopdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

var (
	// ErrBusy means a device is mounted or claimed by another driver (a
	// filesystem, device-mapper, md) and was left attached.
	ErrBusy = errors.New("loop device is in use")
	// ErrDeferred means Detach found the device open elsewhere: the kernel
	// set autoclear and detaches it when its last user closes it.
	ErrDeferred = errors.New("loop device is open elsewhere; it detaches when closed")
	// ErrNotLoop means a path is not a loop device node.
	ErrNotLoop = errors.New("not a loop device")
)

const (
	// hostDevDir is where New looks for device nodes.
	hostDevDir  = "/dev"
	sysBlock    = "/sys/block"
	sysDevBlock = "/sys/dev/block"
	// loopControl is the name of the loop-control node in the device
	// directory.
	loopControl = "loop-control"
	// attachAttempts bounds how often Attach asks for another free device
	// after losing one to a concurrent attach.
	attachAttempts = 64
	// deletedSuffix is what the kernel appends to the path of a backing
	// file that has been unlinked.
	deletedSuffix = " (deleted)"
)

var loopName = regexp.MustCompile(`^loop[0-9]+$`)

// Device is a loop device bound to a backing file.
type Device struct {
	// Path is the device node, /dev/loopN.
	Path string
	// NodeCreated reports that the call that returned the device created
	// the node at Path because it was missing, as in a container whose
	// /dev was populated when it started. Callers that log attaches may
	// log it; the package logs nothing.
	NodeCreated bool
	// BackingFile is the backing file's path as the kernel reports it in
	// sysfs, without the " (deleted)" suffix of an unlinked file. It is the
	// path by which the file was reached when it was attached; Find compares
	// files by device and inode number, not by path.
	BackingFile string
	// Deleted reports that the backing file was unlinked after it was
	// attached.
	Deleted bool
	// ReadOnly reports that the device refuses writes.
	ReadOnly bool
	// Autoclear reports that the device detaches when its last user closes
	// it: the attaching program asked for it, or a Detach found it open.
	Autoclear bool
	// DirectIO reports that the device reads and writes its backing file
	// with direct I/O, bypassing the page cache of the file.
	DirectIO bool

	// fileDev and fileIno identify the backing file (st_dev, st_ino).
	fileDev, fileIno uint64
}

// Name returns the kernel's name of the device, loopN.
func (d Device) Name() string { return filepath.Base(d.Path) }

// Options says how Attach binds a file.
type Options struct {
	// ReadOnly attaches a device that refuses writes; the file is opened
	// read-only.
	ReadOnly bool
	// DirectIO asks for direct I/O on the backing file, so that its data is
	// not cached twice (once for the device, once for the file). It is a
	// wish: where the file's filesystem or the kernel cannot do it, the
	// device works with buffered I/O and Device.DirectIO says so.
	DirectIO bool
}

// Loops attaches, finds, resizes and detaches loop devices.
type Loops struct {
	// devDir is the directory of the device nodes: /dev, or in tests a
	// directory where nodes are missing. Empty means /dev.
	devDir string
}

// New returns a Loops over the host's /dev and /sys.
func New() *Loops { return &Loops{devDir: hostDevDir} }

// Attach binds file, which must be a regular file, to a free loop device
// and returns it. It always binds a new device; use Find first to reuse one.
func (l *Loops) Attach(file string, opts Options) (Device, error) {
	mode := unix.O_RDWR
	if opts.ReadOnly {
		mode = unix.O_RDONLY
	}
	fd, err := unix.Open(file, mode|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return Device{}, fmt.Errorf("attach %s to a loop device: open: %w", file, err)
	}
	defer closeFD(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Device{}, fmt.Errorf("attach %s to a loop device: stat: %w", file, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return Device{}, fmt.Errorf("attach %s to a loop device: not a regular file", file)
	}
	ctlPath := l.devPath(loopControl)
	ctl, err := unix.Open(ctlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return Device{}, fmt.Errorf("attach %s to a loop device: open %s (is the loop module loaded and the host's /dev mounted?): %w", file, ctlPath, err)
	}
	defer closeFD(ctl)

	for range attachAttempts {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return Device{}, fmt.Errorf("attach %s to a loop device: find a free loop device: %w", file, err)
		}
		name := "loop" + strconv.Itoa(n)
		d, err := l.bind(name, fd, file, opts)
		if errors.Is(err, unix.EBUSY) {
			// Another process bound the device between GET_FREE and
			// bind: ask for the next free one.
			continue
		}
		if err != nil {
			return Device{}, fmt.Errorf("attach %s to %s: %w", file, l.devPath(name), err)
		}
		d.BackingFile, d.fileDev, d.fileIno = file, st.Dev, st.Ino
		return d, nil
	}
	return Device{}, fmt.Errorf("attach %s to a loop device: every free device was taken by another program before it could be bound, %d times in a row; retry: %w",
		file, attachAttempts, unix.EBUSY)
}

// bind binds the open file fd to loop device name: LOOP_CONFIGURE, or on
// kernels older than 5.8 LOOP_SET_FD and LOOP_SET_STATUS64. EBUSY means
// the device is already bound.
func (l *Loops) bind(name string, fd int, file string, opts Options) (Device, error) {
	mode := unix.O_RDWR
	if opts.ReadOnly {
		mode = unix.O_RDONLY
	}
	dev, created, err := l.openDevice(name, mode)
	if err != nil {
		return Device{}, err
	}
	defer closeFD(dev)

	var info unix.LoopInfo64
	if opts.ReadOnly {
		info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	// lo_file_name is only informative (64 bytes, truncated); sysfs holds
	// the full path.
	copy(info.File_name[:len(info.File_name)-1], file)
	cfg := unix.LoopConfig{Fd: uint32(fd), Info: info}
	err = unix.IoctlLoopConfigure(dev, &cfg)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
		err = bindLegacy(dev, fd, &info)
	}
	if err != nil {
		return Device{}, err
	}
	d := Device{Path: l.devPath(name), ReadOnly: opts.ReadOnly, NodeCreated: created}
	if opts.DirectIO {
		// Best effort: the device is usable without it.
		d.DirectIO = unix.IoctlSetInt(dev, unix.LOOP_SET_DIRECT_IO, 1) == nil
	}
	return d, nil
}

// bindLegacy binds with the two ioctls older kernels have. The read-only
// flag follows from the mode fd was opened with.
func bindLegacy(dev, fd int, info *unix.LoopInfo64) error {
	if err := unix.IoctlSetInt(dev, unix.LOOP_SET_FD, fd); err != nil {
		return err
	}
	info.Flags = 0 // LOOP_SET_STATUS64 cannot set LO_FLAGS_READ_ONLY
	if err := unix.IoctlLoopSetStatus64(dev, info); err != nil {
		_ = unix.IoctlSetInt(dev, unix.LOOP_CLR_FD, 0)
		return fmt.Errorf("set status: %w", err)
	}
	return nil
}

// Detach unbinds the device at path from its backing file. A device that
// is not bound (any more) is success. A device with a filesystem mounted
// from it, or claimed by another driver, is left alone: ErrBusy. A device
// that some program holds open is detached by the kernel when that program
// closes it: ErrDeferred, and Device.Autoclear reports it meanwhile.
//
// Detach cannot see bind mounts of the device node: they do not hold the
// device open, and a bind mount of a detached device is a device of size
// 0. The caller checks the mount table first.
func (l *Loops) Detach(path string) error {
	name, err := l.nameOf(path)
	if err != nil {
		return err
	}
	if !bound(name) {
		return nil
	}
	// O_EXCL on a block device claims it: EBUSY while a filesystem is
	// mounted from it or another driver holds it.
	dev, _, err := l.openDevice(name, unix.O_RDONLY|unix.O_EXCL)
	switch {
	case errors.Is(err, unix.ENXIO):
		// Detached (or being detached) since bound() looked.
		return nil
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("detach %s: a filesystem is mounted from it or another driver holds it: %w", path, ErrBusy)
	case err != nil:
		return fmt.Errorf("detach %s: %w", path, err)
	}
	err = unix.IoctlSetInt(dev, unix.LOOP_CLR_FD, 0)
	// Recent kernels never refuse LOOP_CLR_FD: they set autoclear and the
	// device detaches at its last close, which is this one when nobody
	// else has it open.
	closeFD(dev)
	switch {
	case errors.Is(err, unix.ENXIO):
		return nil
	case errors.Is(err, unix.EBUSY):
		// Older kernels refuse while another program has it open.
		return fmt.Errorf("detach %s: %w", path, ErrDeferred)
	case err != nil:
		return fmt.Errorf("detach %s: %w", path, err)
	}
	if bound(name) {
		return fmt.Errorf("detach %s: %w", path, ErrDeferred)
	}
	return nil
}

// Refresh makes the device at path take the current size of its backing
// file (LOOP_SET_CAPACITY), after the file grew, and returns the device's
// size in bytes.
func (l *Loops) Refresh(path string) (int64, error) {
	name, err := l.nameOf(path)
	if err != nil {
		return 0, err
	}
	dev, _, err := l.openDevice(name, unix.O_RDONLY)
	if err != nil {
		return 0, fmt.Errorf("refresh the size of %s: %w", path, err)
	}
	err = unix.IoctlSetInt(dev, unix.LOOP_SET_CAPACITY, 0)
	closeFD(dev)
	if err != nil {
		return 0, fmt.Errorf("refresh the size of %s: %w", path, err)
	}
	return l.size(name)
}

// Size returns the size in bytes of the device at path.
func (l *Loops) Size(path string) (int64, error) {
	name, err := l.nameOf(path)
	if err != nil {
		return 0, err
	}
	return l.size(name)
}

func (l *Loops) size(name string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(sysBlock, name, "size"))
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", l.devPath(name), err)
	}
	sectors, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", l.devPath(name), err)
	}
	return sectors * 512, nil
}

// openDevice opens the node of loop device name in the device directory,
// creating it when it is missing (see openMissing); created reports that
// it did.
func (l *Loops) openDevice(name string, mode int) (fd int, created bool, err error) {
	p := l.devPath(name)
	fd, err = unix.Open(p, mode|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if errors.Is(err, unix.ENOENT) {
		return l.openMissing(name, mode)
	}
	if err != nil {
		return -1, false, fmt.Errorf("open %s: %w", p, err)
	}
	return fd, false, nil
}

func closeFD(fd int) { _ = unix.Close(fd) }

// dir returns the directory of the device nodes.
func (l *Loops) dir() string {
	if l.devDir == "" {
		return hostDevDir
	}
	return l.devDir
}

func (l *Loops) devPath(name string) string { return filepath.Join(l.dir(), name) }

// nameOf returns loopN for /dev/loopN.
func (l *Loops) nameOf(path string) (string, error) {
	name := filepath.Base(path)
	if filepath.Dir(path) != l.dir() || !loopName.MatchString(name) {
		return "", fmt.Errorf("%.200q: %w (want %s)", path, ErrNotLoop, l.devPath("loopN"))
	}
	return name, nil
}

// bound reports whether loop device name has a backing file.
func bound(name string) bool {
	_, err := os.Stat(filepath.Join(sysBlock, name, "loop"))
	return err == nil
}
