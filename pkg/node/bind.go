//go:build linux

package node

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// binder makes, recognises and removes the bind mounts of publishes on
// targets the node service has opened (openTarget), so that the mount lands
// on, and the unmount takes off, the very file that was checked. The kernel
// does it in production (kernelBinder); unit tests use a fake that records
// into a fake mount table.
type binder interface {
	// Bind mounts source (a volume directory or a loop device node) on
	// target with the given per-mount flags (ro, nosuid, noatime, ...;
	// capability.Check has refused any other). The mount is made whole
	// before it is attached: it is never visible without its flags.
	Bind(source string, target *os.File, flags []string) error
	// Shows reports whether target, opened after any mount on it, is
	// source: for a directory the same inode, for a device node the same
	// device. A target that shows a volume's directory is a mount of it,
	// and the topmost one at that place.
	Shows(target *os.File, source string) (bool, error)
	// Unmount detaches the mount whose root target is (target opened after
	// the mount was made).
	Unmount(target *os.File) error
}

// kernelBinder uses the kernel's mount API: open_tree clones the source as
// a detached bind mount, mount_setattr gives it its flags, move_mount
// attaches it at the opened target (Linux 5.12 or later).
type kernelBinder struct{}

var _ binder = kernelBinder{}

// errNoMountAPI means the kernel lacks the calls that mount on an opened
// target; the node service then refuses to publish rather than mount by
// path.
var errNoMountAPI = errors.New("the kernel has no open_tree/mount_setattr/move_mount (Linux 5.12 or later is required to mount on an opened target)")

func (kernelBinder) Bind(source string, target *os.File, flags []string) error {
	attr, err := mountAttr(flags)
	if err != nil {
		return err
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return errNoMountAPI
		}
		return fmt.Errorf("clone %s as a bind mount: %w", source, err)
	}
	defer unix.Close(tree)
	if attr.Attr_set != 0 || attr.Attr_clr != 0 {
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, attr); err != nil {
			if errors.Is(err, unix.ENOSYS) {
				return errNoMountAPI
			}
			return fmt.Errorf("set mount flags %v: %w", flags, err)
		}
	}
	if err := unix.MoveMount(tree, "", int(target.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the bind mount of %s: %w", source, err)
	}
	return nil
}

func (kernelBinder) Shows(target *os.File, source string) (bool, error) {
	var t, s unix.Stat_t
	if err := unix.Fstat(int(target.Fd()), &t); err != nil {
		return false, err
	}
	if err := unix.Stat(source, &s); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, err
	}
	if s.Mode&unix.S_IFMT == unix.S_IFBLK {
		return t.Mode&unix.S_IFMT == unix.S_IFBLK && t.Rdev == s.Rdev, nil
	}
	return sameInode(&t, &s), nil
}

func (kernelBinder) Unmount(target *os.File) error {
	// The magic link /proc/self/fd/N leads to the mount target was opened
	// on, whatever the path now leads to. The descriptor itself keeps that
	// mount busy, so it is detached (MNT_DETACH): it leaves the mount table
	// at once and is freed when the descriptor closes.
	err := unix.Unmount(fmt.Sprintf("/proc/self/fd/%d", target.Fd()), unix.MNT_DETACH)
	if err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	return nil
}

// mountAttr turns mount flags into mount_setattr's set and clear masks; a
// later flag wins over an earlier one.
func mountAttr(flags []string) (*unix.MountAttr, error) {
	var a unix.MountAttr
	set := func(bit uint64) { a.Attr_set |= bit; a.Attr_clr &^= bit }
	clr := func(bit uint64) { a.Attr_clr |= bit; a.Attr_set &^= bit }
	atime := func(mode uint64) {
		a.Attr_set = a.Attr_set&^unix.MOUNT_ATTR__ATIME | mode
		a.Attr_clr |= unix.MOUNT_ATTR__ATIME
	}
	for _, f := range flags {
		switch f {
		case "ro":
			set(unix.MOUNT_ATTR_RDONLY)
		case "rw":
			clr(unix.MOUNT_ATTR_RDONLY)
		case "nosuid":
			set(unix.MOUNT_ATTR_NOSUID)
		case "suid":
			clr(unix.MOUNT_ATTR_NOSUID)
		case "nodev":
			set(unix.MOUNT_ATTR_NODEV)
		case "dev":
			clr(unix.MOUNT_ATTR_NODEV)
		case "noexec":
			set(unix.MOUNT_ATTR_NOEXEC)
		case "exec":
			clr(unix.MOUNT_ATTR_NOEXEC)
		case "nodiratime":
			set(unix.MOUNT_ATTR_NODIRATIME)
		case "diratime":
			clr(unix.MOUNT_ATTR_NODIRATIME)
		case "nosymfollow":
			set(unix.MOUNT_ATTR_NOSYMFOLLOW)
		case "noatime":
			atime(unix.MOUNT_ATTR_NOATIME)
		case "strictatime":
			atime(unix.MOUNT_ATTR_STRICTATIME)
		case "relatime", "atime", "norelatime", "nostrictatime":
			// mount(8) reads each of these as "the default", relatime.
			atime(unix.MOUNT_ATTR_RELATIME)
		default:
			return nil, fmt.Errorf("mount flag %q cannot apply to a bind mount: %w", f, unix.EINVAL)
		}
	}
	return &a, nil
}
