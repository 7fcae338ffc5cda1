package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"
)

// targetMode is the mode of a target directory the driver creates.
const targetMode = 0o750

// NodePublishVolume bind-mounts the volume's directory at target_path,
// read-only when the request or its access mode says so. A block volume is
// attached to a loop device whose node is bind-mounted on target_path, a
// file (see publishBlock). Publishing again with the same read-only-ness is
// success. Lock: volume ID + target path, and for a block volume the volume
// ID as well.
//
// Where the volume is already mounted comes from the mount table
// (GetMountRefs), not from memory, so it survives restarts. For
// SINGLE_NODE_SINGLE_WRITER the request is refused while the volume is
// mounted anywhere else; the reverse (a volume first published as single
// writer, then asked for elsewhere with another mode) is the CO's to refuse,
// since a mount does not record the access mode it was made for.
func (s *Server) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if err := validateNodePublishVolume(req); err != nil {
		return nil, err
	}
	id, target := req.GetVolumeId(), filepath.Clean(req.GetTargetPath())
	unlock, err := s.lockTarget(id, target)
	if err != nil {
		return nil, err
	}
	defer unlock()

	v, source, err := s.volumeDir(id)
	if err != nil {
		return nil, err
	}
	if issues := volume.Blocking(s.vols.Health(v)); len(issues) > 0 {
		msg := issues[0].Message
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s cannot be published: %s", id, msg)
	}
	if err := checkAccessType(req.GetVolumeCapability(), v); err != nil {
		return nil, err
	}
	if v.Block {
		if err := s.publishBlock(ctx, req, v, target); err != nil {
			return nil, err
		}
		return &csi.NodePublishVolumeResponse{}, nil
	}
	refs, err := s.mounter.GetMountRefs(source)
	if err != nil {
		return nil, toStatus(fmt.Errorf("find where volume %s is mounted: %w", id, err))
	}
	ro := readOnly(req)
	logger := klog.FromContext(ctx)

	if mountedAt := canonical(target); slices.Contains(refs, mountedAt) {
		mountedRO, err := s.mountedReadOnly(mountedAt)
		if err != nil {
			return nil, toStatus(fmt.Errorf("read mount options of %s: %w", target, err))
		}
		if mountedRO != ro {
			return nil, status.Errorf(codes.AlreadyExists,
				"volume %s is already published at %s %s, and this request asks for %s; unpublish it first",
				id, target, accessWord(mountedRO), accessWord(ro))
		}
		logger.V(4).Info("Volume already published", "volumeID", id, "targetPath", target, "readOnly", ro)
		return &csi.NodePublishVolumeResponse{}, nil
	}
	mode := req.GetVolumeCapability().GetAccessMode().GetMode()
	if mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER && len(refs) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition,
			"volume %s has access mode %s and is already published at %v; unpublish it there first",
			id, mode, refs)
	}
	switch mounted, err := s.mounter.IsMountPoint(target); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, toStatus(fmt.Errorf("check whether %s is a mount point: %w", target, err))
	case mounted:
		return nil, status.Errorf(codes.FailedPrecondition,
			"another volume is mounted at target %s; unpublish it before publishing volume %s there", target, id)
	}

	created, err := makeTarget(target)
	if err != nil {
		return nil, err
	}
	opts := mountOptions(req)
	if err := s.mounter.Mount(source, target, "", opts); err != nil {
		s.undoMount(ctx, target, created)
		return nil, toStatus(fmt.Errorf("bind-mount volume %s at %s with options %v: %w", id, target, opts, err))
	}
	logger.V(2).Info("Volume published", "volumeID", id, "targetPath", target, "source", source,
		"readOnly", ro, "options", opts)
	return &csi.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume unmounts target_path and removes the directory (or,
// for a block volume, the file). A missing target is success. It never
// deletes data: a target that is not a mount point is removed only when it
// is an empty directory or an empty file. A block volume's loop device is
// detached when no other target uses it; so is any device of the volume's
// file that no mount uses, which makes a retry finish a detach that failed.
// It needs no volume record to unmount, so a volume already deleted can
// still be unpublished. Lock: volume ID + target path, and for a block
// volume the volume ID as well, taken before anything is unmounted.
func (s *Server) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if err := validateNodeUnpublishVolume(req); err != nil {
		return nil, err
	}
	id, target := req.GetVolumeId(), filepath.Clean(req.GetTargetPath())
	unlock, err := s.lockTarget(id, target)
	if err != nil {
		return nil, err
	}
	defer unlock()

	// Which loop device is mounted at the target must be read before the
	// mount goes.
	atTarget, err := s.deviceAt(target)
	if err != nil {
		return nil, err
	}
	file, block := s.blockFile(id)
	if block || atTarget != nil {
		unlockVolume, err := s.lockVolume(id)
		if err != nil {
			return nil, err
		}
		defer unlockVolume()
	}
	if err := s.checkTargetFile(target); err != nil {
		return nil, err
	}
	if err := mount.CleanupMountPoint(target, s.mounter, true); err != nil {
		if errors.Is(err, syscall.ENOTEMPTY) {
			err = fmt.Errorf("%w (the target is not a mount point and holds files; they were left in place, move them away and retry)", err)
		}
		return nil, toStatus(fmt.Errorf("unpublish volume %s from %s: %w", id, target, err))
	}
	if err := s.releaseBlock(ctx, id, file, atTarget); err != nil {
		return nil, err
	}
	klog.FromContext(ctx).V(2).Info("Volume unpublished", "volumeID", id, "targetPath", target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// lockTarget refuses a target that overlaps a pool, then takes the try-lock
// of volume ID + target path, answering Aborted when it is held.
func (s *Server) lockTarget(id, target string) (unlock func(), err error) {
	if err := s.checkTarget(target); err != nil {
		return nil, err
	}
	key := publishKey{volumeID: id, targetPath: target}
	if !s.targets.TryLock(key) {
		return nil, status.Errorf(codes.Aborted, "an operation on volume %s at %s is already in progress", id, target)
	}
	return func() { s.targets.Unlock(key) }, nil
}

// mountOptions are the bind-mount options for a publish: "bind", the
// requested mount flags, and "ro" last so that it wins.
func mountOptions(req *csi.NodePublishVolumeRequest) []string {
	opts := []string{"bind"}
	for _, f := range req.GetVolumeCapability().GetMount().GetMountFlags() {
		if f != "ro" && !slices.Contains(opts, f) {
			opts = append(opts, f)
		}
	}
	if readOnly(req) {
		opts = append(opts, "ro")
	}
	return opts
}

// mountedReadOnly reports whether the topmost mount at target is read-only.
func (s *Server) mountedReadOnly(target string) (bool, error) {
	mps, err := s.mounter.List()
	if err != nil {
		return false, err
	}
	ro := false
	for _, mp := range mps {
		if mp.Path == target {
			ro = slices.Contains(mp.Opts, "ro")
		}
	}
	return ro, nil
}

// makeTarget creates target as a directory and reports whether it did; an
// existing directory is used as it is.
func makeTarget(target string) (bool, error) {
	fi, err := os.Stat(target)
	switch {
	case err == nil && fi.IsDir():
		return false, nil
	case err == nil:
		return false, status.Errorf(codes.InvalidArgument,
			"target_path %s exists and is not a directory; a filesystem volume is published on a directory", target)
	case !errors.Is(err, fs.ErrNotExist):
		return false, toStatus(fmt.Errorf("check target %s: %w", target, err))
	}
	if err := os.MkdirAll(target, targetMode); err != nil {
		return false, toStatus(fmt.Errorf("create target %s: %w", target, err))
	}
	return true, nil
}

// undoMount cleans up after a failed Mount: mount-utils bind-mounts first
// and then remounts with the options, so a failed remount leaves a mount
// without them, which must not stay. The target directory goes only if this
// publish created it, and only while empty.
func (s *Server) undoMount(ctx context.Context, target string, created bool) {
	logger := klog.FromContext(ctx)
	if mounted, err := s.mounter.IsMountPoint(target); err == nil && mounted {
		if err := s.mounter.Unmount(target); err != nil {
			logger.Error(err, "Cannot unmount a half-made publish; unpublish will retry", "targetPath", target)
			return
		}
	}
	if !created {
		return
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		logger.Error(err, "Cannot remove the target directory of a failed publish", "targetPath", target)
	}
}

// canonical returns p with symbolic links resolved when it exists, the form
// the mount table shows.
func canonical(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}

func accessWord(readOnly bool) string {
	if readOnly {
		return "read-only"
	}
	return "read-write"
}
