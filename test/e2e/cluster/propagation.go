//go:build linux

package cluster

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// sharedMount makes dir (created if missing) a mount point whose mounts
// propagate both ways, as every directory of a systemd host is: deploy/'s
// DaemonSet mounts the driver's data dir with Bidirectional propagation
// (the image pool's loop mount must reach the host), and containerd refuses
// that on a private mount ("is mounted on / but it is not a shared mount"),
// which / is on this machine. A bind mount of dir onto itself, marked
// shared, is what the kubelet does for its own root dir. dir is one of the
// real node's owned paths: the teardown unmounts it with the rest.
func sharedMount(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	shared, err := isSharedMountPoint(dir)
	if err != nil || shared {
		return err
	}
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s onto itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	return nil
}

// isSharedMountPoint reports whether dir is itself a mount point (the top
// one, if several are stacked there) in a peer group.
func isSharedMountPoint(dir string) (bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	shared, found := false, false
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint options [optional...] - ...
		f := strings.Fields(line)
		if len(f) < 7 || f[4] != dir {
			continue
		}
		found, shared = true, false
		for _, opt := range f[6:] {
			if opt == "-" {
				break
			}
			if strings.HasPrefix(opt, "shared:") {
				shared = true
			}
		}
	}
	return found && shared, nil
}
