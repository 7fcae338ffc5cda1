package loopdev

import (
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
)

const mountInfo = "/proc/self/mountinfo"

// BindMounts returns the mount points where the device node at path
// (/dev/loopN) is bind-mounted, as a block volume's targets are. Such
// mounts do not hold the device open, so Detach cannot see them: whoever
// detaches checks here first.
//
// The mount table names a bind mount of a device node by the filesystem
// that holds the node (devtmpfs) and the node's path inside it (/loopN).
// The filesystem is found by stat, not by the order of the mount table,
// whose entries are not always listed parent first.
func (l *Loops) BindMounts(path string) ([]string, error) {
	if _, err := l.nameOf(path); err != nil {
		return nil, err
	}
	return bindMounts(path, mountInfo)
}

func bindMounts(node, mountInfoPath string) ([]string, error) {
	var st unix.Stat_t
	if err := unix.Stat(node, &st); err != nil {
		return nil, fmt.Errorf("find the mounts of %s: %w", node, err)
	}
	major, minor := int(unix.Major(st.Dev)), int(unix.Minor(st.Dev))
	infos, err := mount.ParseMountInfo(mountInfoPath)
	if err != nil {
		return nil, fmt.Errorf("find the mounts of %s: %w", node, err)
	}
	// The mount through which node is reached: among the mounts of its
	// filesystem, the one with the longest mount point above it (the last
	// listed of equal ones, which is mounted over the others).
	base := -1
	for i, mi := range infos {
		if mi.Major != major || mi.Minor != minor {
			continue
		}
		if node != mi.MountPoint && !mount.PathWithinBase(node, mi.MountPoint) {
			continue
		}
		if base < 0 || len(mi.MountPoint) >= len(infos[base].MountPoint) {
			base = i
		}
	}
	if base < 0 {
		return nil, fmt.Errorf("find the mounts of %s: no mount of device %d:%d holds it", node, major, minor)
	}
	root := filepath.Join(infos[base].Root, strings.TrimPrefix(node, infos[base].MountPoint))
	var refs []string
	for i, mi := range infos {
		if i != base && mi.Major == major && mi.Minor == minor && mi.Root == root {
			refs = append(refs, mi.MountPoint)
		}
	}
	return refs, nil
}
