//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/pkg/volume"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// NodeUnpublishVolume takes this volume's mounts off target_path and then
// removes the target when it is an empty directory or an empty regular
// file. It acts only on what it can show is this volume's: the topmost
// mount at the target must show the volume's directory (for a block
// volume: a loop device of its file). A target without this volume on it
// is success, since the volume is not published there, and is left as it is
// when it holds anything: a mount of something else, files, a device node,
// a FIFO, a socket. A volume this node does not know is published nowhere.
// Refused, with nothing changed: a symbolic link in the path, a mount of
// something else on top of this volume's (which cannot then be reached),
// and a target that still holds files or special files once this volume's
// mount is off. A block volume's loop device is detached when no other
// target uses it; so is any device of the volume's file that no mount uses,
// which makes a retry finish a detach that failed. Lock: lockPublish.
func (s *Server) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if err := validateNodeUnpublishVolume(req); err != nil {
		return nil, err
	}
	id, target := req.GetVolumeId(), filepath.Clean(req.GetTargetPath())
	if ephemeralHandle.MatchString(id) {
		// An inline volume: unpublished and deleted while it is
		// recorded (see ephemeral.go); once it is gone, the target is
		// treated as that of an unknown volume.
		if !s.vols.Ready() {
			return nil, toStatus(fmt.Errorf("inline volume %s: %w; retry shortly", id, volume.ErrNotReady))
		}
		if v, ok := s.ephemeralOf(id); ok {
			return s.unpublishEphemeral(ctx, req, v)
		}
	}
	unlock, err := s.lockPublish(id, target)
	if err != nil {
		return nil, err
	}
	defer unlock()
	logger := klog.FromContext(ctx)

	t, err := s.openTarget(target, false)
	if errors.Is(err, unix.ENOENT) {
		// Nothing is published there. A block volume's devices that no
		// mount uses are still released, to finish a detach that failed.
		logger.V(4).Info("Target does not exist; nothing to unpublish", "volumeID", id, "targetPath", target)
		if src, err := s.sourceOf(id); err == nil {
			if err := s.releaseBlock(ctx, id, src, nil); err != nil {
				return nil, err
			}
		}
		return &csi.NodeUnpublishVolumeResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer t.Close()
	src, err := s.sourceOf(id)
	if err != nil {
		return nil, err
	}

	// Every mount of this volume stacked at the target goes, topmost first
	// (a bounded number: each pass must take one off).
	unmounted := false
	var devs []loopdev.Device
	for pass := 0; t.file != nil; pass++ {
		if pass == maxStacked {
			return nil, status.Errorf(codes.Internal, "volume %s is still mounted at %s after %d unmounts; check the mount table", id, target, pass)
		}
		mine, dev, err := s.holds(t, src)
		if err != nil {
			return nil, err
		}
		if !mine {
			break
		}
		if err := s.binds.Unmount(t.file); err != nil {
			return nil, toStatus(fmt.Errorf("unpublish volume %s from %s: %w", id, target, err))
		}
		unmounted = true
		if dev != nil {
			devs = append(devs, *dev)
		}
		if err := t.reopen(); err != nil {
			return nil, toStatus(fmt.Errorf("open target %s after unmounting: %w", target, err))
		}
	}
	if err := s.removeTarget(ctx, id, t, src, unmounted); err != nil {
		return nil, err
	}
	if err := s.releaseBlock(ctx, id, src, devs); err != nil {
		return nil, err
	}
	if unmounted {
		logger.V(2).Info("Volume unpublished", "volumeID", id, "targetPath", target)
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// maxStacked bounds how many mounts of one volume NodeUnpublishVolume takes
// off one target; publish never stacks two.
const maxStacked = 8

// volumeSource is where a volume's data is, for telling its mounts apart:
// its directory, or its block file. A volume this node does not know has
// none (path is empty), and nothing is its.
type volumeSource struct {
	path  string
	block bool
}

// sourceOf returns the source of volume id. A volume that is not in the
// catalog has none; one whose pool this start was not given is an error,
// since its mounts could not be recognised.
func (s *Server) sourceOf(id string) (volumeSource, error) {
	if !s.vols.Ready() {
		return volumeSource{}, toStatus(fmt.Errorf("volume %s: %w; retry shortly", id, volume.ErrNotReady))
	}
	v, err := s.vols.Get(id)
	if errors.Is(err, volume.ErrNotFound) {
		return volumeSource{}, nil
	}
	if err != nil {
		return volumeSource{}, toStatus(err)
	}
	if v.Block {
		file, err := s.vols.BlockPath(v)
		if err != nil {
			return volumeSource{}, toStatus(fmt.Errorf("find the block file of volume %s: %w", id, err))
		}
		return volumeSource{path: file, block: true}, nil
	}
	dir, err := s.vols.Path(v)
	if err != nil {
		return volumeSource{}, toStatus(err)
	}
	return volumeSource{path: dir}, nil
}

// holds reports whether the topmost mount at t is volume src's: its
// directory, or a loop device of its block file (returned).
func (s *Server) holds(t *openedTarget, src volumeSource) (bool, *loopdev.Device, error) {
	if src.path == "" {
		return false, nil, nil
	}
	if !src.block {
		shows, err := s.binds.Shows(t.file, src.path)
		if err != nil {
			return false, nil, toStatus(fmt.Errorf("check what target %s shows: %w", t.path, err))
		}
		return shows, nil, nil
	}
	devs, err := s.loops.Find(src.path)
	if err != nil {
		return false, nil, toStatus(fmt.Errorf("find the loop devices of %s: %w", src.path, err))
	}
	for _, d := range devs {
		shows, err := s.binds.Shows(t.file, d.Path)
		if err != nil {
			return false, nil, toStatus(fmt.Errorf("check what target %s shows: %w", t.path, err))
		}
		if shows {
			return true, &d, nil
		}
	}
	return false, nil, nil
}

// removeTarget removes what is left at the target once this volume's
// mounts are off it, when it is what the driver or the CO makes there: an
// empty directory for a filesystem volume, an empty regular file for a
// block volume (either, for a volume this node does not know). A mount of
// something else stays and is success, unless this volume is mounted
// under it; files, a device node, a FIFO or a socket stay and are refused
// with a message that says so.
func (s *Server) removeTarget(ctx context.Context, id string, t *openedTarget, src volumeSource, unmounted bool) error {
	if t.file == nil {
		return nil
	}
	mounted, err := s.mounter.IsMountPoint(t.path)
	if err != nil {
		return toStatus(fmt.Errorf("check whether %s is a mount point: %w", t.path, err))
	}
	if mounted {
		if s.mountedUnder(t.path, src) {
			return status.Errorf(codes.FailedPrecondition,
				"target %s has something else mounted over volume %s (%s); unmount it, then retry", t.path, id, s.describeMount(t.path))
		}
		klog.FromContext(ctx).Info("Target holds a mount that is not this volume's; left in place",
			"volumeID", id, "targetPath", t.path, "mount", s.describeMount(t.path))
		return nil
	}
	holder := fmt.Sprintf("target %s is not a mount of volume %s and", t.path, id)
	if unmounted {
		holder = fmt.Sprintf("volume %s was unmounted from %s, but the target", id, t.path)
	}
	isFile := t.st.Mode&unix.S_IFMT == unix.S_IFREG
	if src.path != "" && ((src.block && t.isDir()) || (!src.block && isFile)) {
		// Each kind of volume has one kind of target: a directory for a
		// filesystem volume, a file for a block volume.
		return status.Errorf(codes.FailedPrecondition,
			"%s is a %s, which is not the target of a %s volume; it was left in place, remove it and retry",
			holder, kindOf(t.st), map[bool]string{false: "filesystem", true: "block"}[src.block])
	}
	switch {
	case t.isDir():
		err := unix.Unlinkat(int(t.parent.Fd()), t.name, unix.AT_REMOVEDIR)
		if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			return status.Errorf(codes.FailedPrecondition,
				"%s holds files; they were left in place, move them away and retry", holder)
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return toStatus(fmt.Errorf("remove target %s: %w", t.path, err))
		}
	case isFile:
		if t.st.Size != 0 {
			return status.Errorf(codes.FailedPrecondition,
				"%s is a file holding %d bytes; it was left in place, move it away and retry", holder, t.st.Size)
		}
		if err := unix.Unlinkat(int(t.parent.Fd()), t.name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return toStatus(fmt.Errorf("remove target %s: %w", t.path, err))
		}
	default:
		return status.Errorf(codes.FailedPrecondition,
			"%s is a %s, which is never a target the driver or the CO makes; it was left in place, remove it and retry", holder, kindOf(t.st))
	}
	return nil
}

// mountedUnder reports whether volume src is among the mounts at path
// (mount references of its directory, or bind mounts of its loop devices).
func (s *Server) mountedUnder(path string, src volumeSource) bool {
	if src.path == "" {
		return false
	}
	var refs []string
	if src.block {
		devs, err := s.loops.Find(src.path)
		if err != nil {
			return false
		}
		refs, _ = s.deviceRefs(devs)
	} else {
		refs, _ = s.mounter.GetMountRefs(src.path)
	}
	return slices.Contains(refs, path)
}

// describeMount says what is mounted on top at path, for messages.
func (s *Server) describeMount(path string) string {
	mps, err := s.mounter.List()
	if err != nil {
		return "the mount table cannot be read"
	}
	desc := "a mount the mount table does not list"
	for _, mp := range mps {
		if mp.Path == path {
			desc = fmt.Sprintf("%s of type %s", mp.Device, mp.Type)
		}
	}
	return desc
}
