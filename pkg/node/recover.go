package node

import (
	"context"
	"fmt"
	"time"

	"github.com/dirvol/dirvol/pkg/volume"
	"k8s.io/klog/v2"
)

// Recover detaches the loop devices that a crash, or an unpublish that
// could not finish, left attached, and says, once, what the kernel lacks
// of the calls publishing relies on (see logMountAPI). See Sweep for which
// devices it detaches.
//
// Call it once the volume manager has recovered.
func (s *Server) Recover(ctx context.Context) error {
	if !s.vols.Ready() {
		return fmt.Errorf("node: recover loop devices: %w", volume.ErrNotReady)
	}
	logMountAPI(klog.FromContext(ctx))
	return s.Sweep(ctx)
}

// Run sweeps the loop devices every interval (see Sweep) until ctx is
// done: a device that a failed or deferred detach left attached is
// detached once nothing uses it, so that DeleteVolume, which refuses a
// block volume while a device is attached to its file, can go ahead.
func (s *Server) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("node: loop device sweep interval %s must be positive", interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !s.vols.Ready() {
			continue
		}
		if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "Cannot sweep the loop devices; trying again later")
		}
	}
}

// Sweep detaches the loop devices of the driver's that no mount uses: the
// devices attached to the block file of a ready volume (found by the file's
// device and inode numbers, whatever path the kernel reports for it: after
// the driver's container restarted, that path is relative to a mount that
// no longer exists), and devices whose reported backing file lies inside
// one of the pools. Each one is logged. Devices of files outside the pools
// are never touched, whoever made them, and neither are devices with
// autoclear set (the kernel detaches those when their last user closes
// them) nor devices in use (a mounted filesystem, another driver, a bind
// mount). A device that cannot be detached is logged and left; only
// failing to list the devices is an error.
//
// It may run while node RPCs are served: it takes the lock of the volume
// that owns each device and leaves a device whose volume is busy to the
// RPC in flight, which either uses it or detaches it.
func (s *Server) Sweep(ctx context.Context) error {
	if !s.vols.Ready() {
		return fmt.Errorf("node: sweep loop devices: %w", volume.ErrNotReady)
	}
	logger := klog.FromContext(ctx)
	// Devices are listed before volumes. A publish attaches only the file
	// of a volume that is ready, so a device whose file belongs to no
	// volume ready afterwards cannot be one a publish is setting up.
	devs, err := s.loops.List()
	if err != nil {
		return fmt.Errorf("node: sweep loop devices: %w", err)
	}
	owners, err := s.blockOwners()
	if err != nil {
		return fmt.Errorf("node: sweep loop devices: %w", err)
	}
	var kept, detached int
	for _, d := range devs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		id, owned := owners[d.Path]
		if d.Autoclear || (!owned && !s.inPool(d.BackingFile)) {
			continue
		}
		if owned && !s.volumes.TryLock(id) {
			logger.V(2).Info("Loop device left to the operation in progress on its volume", "device", d.Path, "file", d.BackingFile, "volumeID", id)
			kept++
			continue
		}
		done, err := s.releaseDevice(ctx, d, owned)
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
			logger.V(4).Info("Loop device in use, kept", "device", d.Path, "file", d.BackingFile, "volumeID", id)
			kept++
		}
	}
	if detached > 0 {
		logger.Info("Loop devices of pool files swept", "detached", detached, "kept", kept)
	}
	return nil
}

// blockOwners maps each loop device attached to the block file of a ready
// volume to the volume's ID. Devices are matched to files by device and
// inode numbers, never by the path the kernel reports.
func (s *Server) blockOwners() (map[string]string, error) {
	owners := make(map[string]string)
	for _, v := range s.vols.List() {
		if !v.Block {
			continue
		}
		file, err := s.vols.BlockPath(v)
		if err != nil {
			continue
		}
		devs, err := s.loops.Find(file)
		if err != nil {
			return nil, err
		}
		for _, d := range devs {
			owners[d.Path] = v.ID
		}
	}
	return owners, nil
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
