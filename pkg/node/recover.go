package node

import (
	"context"
	"fmt"

	"github.com/dirvol/dirvol/pkg/volume"
	"k8s.io/klog/v2"
)

// Recover detaches the loop devices that a crash, or an unpublish that
// could not finish, left attached: devices whose backing file lies inside
// one of the pools and that no mount uses. Each one is logged. Devices of
// files outside the pools are never touched, whoever made them, and neither
// are devices with autoclear set (the kernel detaches those when their last
// user closes them) nor devices in use (a mounted filesystem, another
// driver, a bind mount). A device that cannot be detached is logged and
// left; only failing to list the devices is an error.
//
// It also says, once, what the kernel lacks of the calls publishing relies
// on (see logMountAPI).
//
// Call it once the volume manager has recovered. It may run while node
// RPCs are served: it takes the lock of the volume that owns each device
// and leaves a device whose volume is busy to the RPC in flight, which
// either uses it or detaches it.
func (s *Server) Recover(ctx context.Context) error {
	if !s.vols.Ready() {
		return fmt.Errorf("node: recover loop devices: %w", volume.ErrNotReady)
	}
	logger := klog.FromContext(ctx)
	logMountAPI(logger)
	// Devices are listed before volumes. A publish attaches only the file
	// of a volume that is ready, so a device whose file belongs to no
	// volume ready afterwards cannot be one a publish is setting up.
	devs, err := s.loops.List()
	if err != nil {
		return fmt.Errorf("node: recover loop devices: %w", err)
	}
	owners := s.blockOwners()
	var kept, detached int
	for _, d := range devs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if d.Autoclear || !s.inPool(d.BackingFile) {
			continue
		}
		id, owned := owners[d.BackingFile]
		if owned && !s.volumes.TryLock(id) {
			logger.V(2).Info("Loop device left to the operation in progress on its volume", "device", d.Path, "file", d.BackingFile, "volumeID", id)
			kept++
			continue
		}
		done, err := s.releaseDevice(d)
		if owned {
			s.volumes.Unlock(id)
		}
		switch {
		case err != nil:
			logger.Error(err, "Cannot detach a loop device of a pool file; it stays attached", "device", d.Path, "file", d.BackingFile, "fileDeleted", d.Deleted, "volumeID", id)
			kept++
		case done:
			logger.Info("Detached a loop device that nothing used", "device", d.Path, "file", d.BackingFile, "fileDeleted", d.Deleted, "volumeID", id)
			detached++
		default:
			logger.V(2).Info("Loop device in use, kept", "device", d.Path, "file", d.BackingFile, "volumeID", id)
			kept++
		}
	}
	if kept+detached > 0 {
		logger.Info("Loop devices of pool files recovered", "detached", detached, "kept", kept)
	}
	return nil
}

// blockOwners maps the block file of every ready block volume, with
// symbolic links resolved as the kernel reports backing files, to the
// volume's ID.
func (s *Server) blockOwners() map[string]string {
	owners := make(map[string]string)
	for _, v := range s.vols.List() {
		if !v.Block {
			continue
		}
		if file, err := s.vols.BlockPath(v); err == nil {
			owners[resolve(file)] = v.ID
		}
	}
	return owners
}

// logMountAPI says what publishing can promise on this kernel: without
// open_tree and move_mount (Linux 5.2) every publish is refused; without
// mount_setattr (5.12) a bind mount gets its flags (ro, nosuid, ...) by a
// remount just after it appears; without openat2 (5.6) target paths are
// opened one component at a time with O_NOFOLLOW alone.
func logMountAPI(logger klog.Logger) {
	openat2, openTree, mountSetattr := mountAPI()
	switch {
	case !openTree:
		logger.Error(errNoMountAPI, "Every NodePublishVolume will be refused on this kernel")
	case !mountSetattr:
		logger.Info("The kernel has no mount_setattr (Linux 5.12): a published bind mount is briefly without its flags (ro, nosuid, ...) until a remount applies them")
	}
	if !openat2 {
		logger.Info("The kernel has no openat2 (Linux 5.6): target paths are opened one component at a time with O_NOFOLLOW")
	}
}
