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
// attaches it at the opened target (Linux 5.12 or later). On Linux 5.2 to
// 5.11, which lack mount_setattr, the flags are applied right after the
// attach by a bind remount of the attached mount, reached through the
// clone's descriptor (the mount is then briefly visible without them);
// legacyRemount forces that path, so that it is tested on newer kernels.
type kernelBinder struct {
	legacyRemount bool
}

var _ binder = kernelBinder{}

// errNoMountAPI means the kernel lacks the calls that mount on an opened
// target; the node service then refuses to publish rather than mount by
// path.
var errNoMountAPI = errors.New("the kernel has no open_tree/move_mount (Linux 5.2 or later is required to mount on an opened target)")

func (b kernelBinder) Bind(source string, target *os.File, flags []string) error {
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
	remount := b.legacyRemount
	if !remount && (attr.Attr_set != 0 || attr.Attr_clr != 0) {
		err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, attr)
		switch {
		case errors.Is(err, unix.ENOSYS):
			remount = true
		case err != nil:
			return fmt.Errorf("set mount flags %v: %w", flags, err)
		}
	}
	if err := unix.MoveMount(tree, "", int(target.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the bind mount of %s: %w", source, err)
	}
	if remount && (attr.Attr_set != 0 || attr.Attr_clr != 0) {
		if err := remountAttached(tree, attr); err != nil {
			// Never leave the mount without its flags (a read-only
			// publish must not stay writable).
			if uerr := unix.Unmount(fdPathOf(tree), unix.MNT_DETACH); uerr != nil {
				return fmt.Errorf("set mount flags %v: %w; and the mount without them could not be taken off: %w", flags, err, uerr)
			}
			return fmt.Errorf("set mount flags %v: %w", flags, err)
		}
	}
	return nil
}

// remountAttached applies attr to the attached mount whose root tree is,
// with a bind remount (mount(2)), keeping the per-mount flags the clone
// took from its source unless attr clears them.
func remountAttached(tree int, attr *unix.MountAttr) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(tree, &st); err != nil {
		return err
	}
	var cur uint64
	for stBit, attrBit := range map[int64]uint64{
		unix.ST_RDONLY: unix.MOUNT_ATTR_RDONLY, unix.ST_NOSUID: unix.MOUNT_ATTR_NOSUID, unix.ST_NODEV: unix.MOUNT_ATTR_NODEV,
		unix.ST_NOEXEC: unix.MOUNT_ATTR_NOEXEC, unix.ST_NODIRATIME: unix.MOUNT_ATTR_NODIRATIME, unix.ST_NOATIME: unix.MOUNT_ATTR_NOATIME,
	} {
		if st.Flags&stBit != 0 {
			cur |= attrBit
		}
	}
	want := cur&^attr.Attr_clr | attr.Attr_set
	var ms uintptr = unix.MS_REMOUNT | unix.MS_BIND
	for attrBit, msBit := range map[uint64]uintptr{
		unix.MOUNT_ATTR_RDONLY: unix.MS_RDONLY, unix.MOUNT_ATTR_NOSUID: unix.MS_NOSUID, unix.MOUNT_ATTR_NODEV: unix.MS_NODEV,
		unix.MOUNT_ATTR_NOEXEC: unix.MS_NOEXEC, unix.MOUNT_ATTR_NODIRATIME: unix.MS_NODIRATIME,
		unix.MOUNT_ATTR_NOSYMFOLLOW: unix.MS_NOSYMFOLLOW,
	} {
		if want&attrBit != 0 {
			ms |= msBit
		}
	}
	switch want & unix.MOUNT_ATTR__ATIME {
	case unix.MOUNT_ATTR_NOATIME:
		ms |= unix.MS_NOATIME
	case unix.MOUNT_ATTR_STRICTATIME:
		ms |= unix.MS_STRICTATIME
	default:
		ms |= unix.MS_RELATIME
	}
	if err := unix.Mount("", fdPathOf(tree), "", ms, ""); err != nil {
		return fmt.Errorf("bind remount: %w", err)
	}
	return nil
}

// fdPathOf names what descriptor fd refers to, through /proc: the magic
// link leads to that very file or mount, whatever its path is now.
func fdPathOf(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// mountAPI reports which of the calls the node service relies on the
// kernel has, by calling each with a descriptor that cannot exist (EBADF
// from a kernel that has the call, ENOSYS from one that does not).
func mountAPI() (openat2, openTree, mountSetattr bool) {
	_, err := unix.Openat2(-1, "x", &unix.OpenHow{Flags: unix.O_PATH})
	openat2 = !errors.Is(err, unix.ENOSYS)
	_, err = unix.OpenTree(-1, "", unix.AT_EMPTY_PATH)
	openTree = !errors.Is(err, unix.ENOSYS)
	err = unix.MountSetattr(-1, "", unix.AT_EMPTY_PATH, &unix.MountAttr{})
	mountSetattr = !errors.Is(err, unix.ENOSYS)
	return openat2, openTree, mountSetattr
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
	err := unix.Unmount(fdPathOf(int(target.Fd())), unix.MNT_DETACH)
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
