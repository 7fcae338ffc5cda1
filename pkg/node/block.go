package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"
)

// A block volume is a sparse file in the pool. Publishing it attaches the
// file to a loop device and bind-mounts the device node on the target, a
// file. Every target of a volume that asks for the same access (read-write
// or read-only) shares one device; read-only targets get a device attached
// read-only, because a read-only bind mount of a device node does not stop
// writes to the device. A device is detached when the last mount of it goes.
// What is attached and mounted is read from the kernel (loop devices and the
// mount table), never remembered, so it survives restarts.

// targetFileMode is the mode of a target file the driver creates for a
// block volume; the device node mounted over it has its own.
const targetFileMode = 0o600

// checkAccessType refuses to publish a block volume as a filesystem or a
// filesystem volume as a block device.
func checkAccessType(c *csi.VolumeCapability, v volume.Volume) error {
	block := c.GetBlock() != nil
	switch {
	case v.Block && !block:
		return status.Errorf(codes.InvalidArgument,
			"volume %s is a block volume (volumeMode Block) and has no filesystem to mount; use access type block", v.ID)
	case !v.Block && block:
		return status.Errorf(codes.InvalidArgument,
			"volume %s is a filesystem volume (volumeMode Filesystem) and has no block device; use access type mount", v.ID)
	}
	return nil
}

// publishBlock exposes block volume v at target: it reuses the volume's
// loop device of the right access or attaches one, creates target as a
// file and bind-mounts the device node on it. The caller holds the target's
// lock; publishBlock takes the volume's. Whatever it attached is detached
// again when a later step fails.
func (s *Server) publishBlock(ctx context.Context, req *csi.NodePublishVolumeRequest, v volume.Volume, target string) error {
	id := v.ID
	unlock, err := s.lockVolume(id)
	if err != nil {
		return err
	}
	defer unlock()
	logger := klog.FromContext(ctx)
	ro := readOnly(req)

	file, err := s.vols.BlockPath(v)
	if err != nil {
		return toStatus(fmt.Errorf("find the block file of volume %s: %w", id, err))
	}
	devs, err := s.loops.Find(file)
	if err != nil {
		return toStatus(fmt.Errorf("find the loop devices of volume %s: %w", id, err))
	}

	// Published here already? Only a mount point is asked what device it
	// is: a symbolic link to a device node is not a publish.
	mounted, err := s.mounter.IsMountPoint(target)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return toStatus(fmt.Errorf("check whether %s is a mount point: %w", target, err))
	}
	if mounted {
		at, isLoop, err := s.loops.At(target)
		switch {
		case err != nil:
			return toStatus(fmt.Errorf("check what is mounted at target %s: %w", target, err))
		case !isLoop:
			return status.Errorf(codes.FailedPrecondition,
				"something else is mounted at target %s; unpublish it before publishing volume %s there", target, id)
		case !slices.ContainsFunc(devs, func(d loopdev.Device) bool { return d.Path == at.Path }):
			return status.Errorf(codes.FailedPrecondition,
				"target %s holds loop device %s of %s, not volume %s; unpublish it before publishing volume %s there",
				target, at.Path, at.BackingFile, id, id)
		case at.ReadOnly != ro:
			return status.Errorf(codes.AlreadyExists,
				"volume %s is already published at %s %s, and this request asks for %s; unpublish it first",
				id, target, accessWord(at.ReadOnly), accessWord(ro))
		}
		logger.V(4).Info("Volume already published", "volumeID", id, "targetPath", target, "device", at.Path, "readOnly", ro)
		return nil
	}
	if mode := req.GetVolumeCapability().GetAccessMode().GetMode(); mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER {
		refs, err := s.deviceRefs(devs)
		if err != nil {
			return toStatus(fmt.Errorf("find where volume %s is published: %w", id, err))
		}
		if len(refs) > 0 {
			return status.Errorf(codes.FailedPrecondition,
				"volume %s has access mode %s and is already published at %v; unpublish it there first", id, mode, refs)
		}
	}

	dev, attached, err := s.deviceFor(ctx, file, devs, ro)
	if err != nil {
		return toStatus(fmt.Errorf("attach volume %s to a loop device: %w", id, err))
	}
	// undo detaches a device this call attached, once nothing is mounted
	// from it.
	undo := func() {
		if !attached {
			return
		}
		if _, err := s.releaseDevice(dev); err != nil {
			logger.Error(err, "Cannot detach the loop device of a failed publish; unpublish or the next start will", "volumeID", id, "device", dev.Path)
		}
	}
	created, err := makeBlockTarget(target)
	if err != nil {
		undo()
		return err
	}
	opts := []string{"bind"}
	if ro {
		opts = append(opts, "ro")
	}
	if err := s.mounter.Mount(dev.Path, target, "", opts); err != nil {
		s.undoMount(ctx, target, created)
		undo()
		return toStatus(fmt.Errorf("bind-mount loop device %s of volume %s at %s with options %v: %w", dev.Path, id, target, opts, err))
	}
	logger.V(2).Info("Volume published", "volumeID", id, "targetPath", target, "device", dev.Path,
		"file", file, "readOnly", ro, "newDevice", attached, "directIO", dev.DirectIO)
	return nil
}

// deviceFor returns a loop device of file with the requested access: one of
// devs, or a new one (attached reports which). A device being detached
// (autoclear set) is not reused.
func (s *Server) deviceFor(ctx context.Context, file string, devs []loopdev.Device, readOnly bool) (dev loopdev.Device, attached bool, err error) {
	for _, d := range devs {
		if d.ReadOnly == readOnly && !d.Autoclear {
			return d, false, nil
		}
	}
	d, err := s.loops.Attach(file, loopdev.Options{ReadOnly: readOnly, DirectIO: true})
	if err != nil {
		return loopdev.Device{}, false, err
	}
	klog.FromContext(ctx).V(2).Info("Loop device attached", "device", d.Path, "file", file, "readOnly", readOnly, "directIO", d.DirectIO, "nodeCreated", d.NodeCreated)
	return d, true, nil
}

// makeBlockTarget creates target as an empty file, and its parent
// directory when missing, and reports whether it created the file. An
// existing regular file is used as it is; anything else is refused.
func makeBlockTarget(target string) (bool, error) {
	fi, err := os.Lstat(target)
	switch {
	case err == nil && fi.Mode().IsRegular():
		return false, nil
	case err == nil:
		return false, status.Errorf(codes.InvalidArgument,
			"target_path %s exists and is a %s; a block volume is published on a file, which the driver creates when it is missing", target, kindOf(fi))
	case !errors.Is(err, fs.ErrNotExist):
		return false, toStatus(fmt.Errorf("check target %s: %w", target, err))
	}
	if err := os.MkdirAll(filepath.Dir(target), targetMode); err != nil {
		return false, toStatus(fmt.Errorf("create the directory of target %s: %w", target, err))
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, targetFileMode)
	if err != nil {
		return false, toStatus(fmt.Errorf("create target file %s: %w", target, err))
	}
	if err := f.Close(); err != nil {
		return true, toStatus(fmt.Errorf("create target file %s: %w", target, err))
	}
	return true, nil
}

func kindOf(fi fs.FileInfo) string {
	switch {
	case fi.IsDir():
		return "directory"
	case fi.Mode()&fs.ModeSymlink != 0:
		return "symbolic link"
	case fi.Mode()&fs.ModeDevice != 0:
		return "device node"
	}
	return "special file"
}

// checkTargetFile refuses to unpublish a target that is a regular file
// holding data and not a mount point: the driver only ever creates empty
// target files, so it is someone else's file.
func (s *Server) checkTargetFile(target string) error {
	fi, err := os.Lstat(target)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
		return nil
	}
	mounted, err := s.mounter.IsMountPoint(target)
	if err != nil || mounted {
		return nil
	}
	return status.Errorf(codes.Internal,
		"target %s is not a mount point and is a file holding %d bytes; it was left in place, move it away and retry", target, fi.Size())
}

// blockFile returns the block file of volume id when the volume is known
// and a block volume.
func (s *Server) blockFile(id string) (string, bool) {
	if !s.vols.Ready() {
		return "", false
	}
	v, err := s.vols.Get(id)
	if err != nil || !v.Block {
		return "", false
	}
	file, err := s.vols.BlockPath(v)
	return file, err == nil
}

// releaseBlock detaches, after an unpublish, the loop devices of volume id
// that no mount uses any more: the device that was at the target, and
// every device of the volume's block file when it is known (also one a
// crash between unmount and detach left behind). The caller holds the
// volume's lock.
func (s *Server) releaseBlock(ctx context.Context, id, file string, atTarget *loopdev.Device) error {
	var devs []loopdev.Device
	if atTarget != nil {
		devs = append(devs, *atTarget)
	}
	if file != "" {
		found, err := s.loops.Find(file)
		if err != nil {
			return toStatus(fmt.Errorf("find the loop devices of volume %s: %w", id, err))
		}
		for _, d := range found {
			if !slices.ContainsFunc(devs, func(o loopdev.Device) bool { return o.Path == d.Path }) {
				devs = append(devs, d)
			}
		}
	}
	for _, d := range devs {
		detached, err := s.releaseDevice(d)
		if err != nil {
			return toStatus(fmt.Errorf("detach loop device %s of volume %s: %w", d.Path, id, err))
		}
		if detached {
			klog.FromContext(ctx).V(2).Info("Loop device detached", "volumeID", id, "device", d.Path, "file", d.BackingFile)
		}
	}
	return nil
}

// releaseDevice detaches d when no mount uses it and its backing file is in
// one of the pools, and reports whether it did (or the kernel will, at the
// device's last close). Bind mounts of the device node do not hold the
// device open, so they are counted in the mount table (in it, a bind mount
// of /dev/loopN is devtmpfs with root /loopN); a filesystem mounted from
// the device, or another driver on it, makes Detach answer ErrBusy. The
// caller holds the lock of the volume that owns d, when one does.
func (s *Server) releaseDevice(d loopdev.Device) (bool, error) {
	if !s.inPool(d.BackingFile) {
		return false, nil
	}
	refs, err := s.loops.BindMounts(d.Path)
	if err != nil {
		return false, fmt.Errorf("find the mounts of %s: %w", d.Path, err)
	}
	if len(refs) > 0 {
		return false, nil
	}
	if err := s.loops.Detach(d.Path); err != nil && !errors.Is(err, loopdev.ErrDeferred) {
		return false, err
	}
	return true, nil
}

// deviceRefs returns every place where one of devs is bind-mounted.
func (s *Server) deviceRefs(devs []loopdev.Device) ([]string, error) {
	var refs []string
	for _, d := range devs {
		r, err := s.loops.BindMounts(d.Path)
		if err != nil {
			return nil, err
		}
		refs = append(refs, r...)
	}
	return refs, nil
}

// blockPublishedAt returns the loop device of block volume v that is
// bind-mounted at path, if any.
func (s *Server) blockPublishedAt(v volume.Volume, path string) (loopdev.Device, bool, error) {
	if !filepath.IsAbs(path) {
		return loopdev.Device{}, false, nil
	}
	file, err := s.vols.BlockPath(v)
	if err != nil {
		return loopdev.Device{}, false, err
	}
	devs, err := s.loops.Find(file)
	if err != nil {
		return loopdev.Device{}, false, err
	}
	path = canonical(path)
	for _, d := range devs {
		refs, err := s.loops.BindMounts(d.Path)
		if err != nil {
			return loopdev.Device{}, false, err
		}
		if slices.Contains(refs, path) {
			return d, true, nil
		}
	}
	return loopdev.Device{}, false, nil
}

// inPool reports whether file lies inside one of the pools. Only loop
// devices of such files are ever detached.
func (s *Server) inPool(file string) bool {
	if file == "" {
		return false
	}
	for _, root := range s.vols.Roots() {
		if mount.PathWithinBase(file, resolve(root)) {
			return true
		}
	}
	return false
}

// deviceAt returns the loop device mounted at target, if target is a mount
// point and what is mounted there is a loop device node.
func (s *Server) deviceAt(target string) (*loopdev.Device, error) {
	mounted, err := s.mounter.IsMountPoint(target)
	if err != nil || !mounted {
		// An error is CleanupMountPoint's to report.
		return nil, nil
	}
	d, isLoop, err := s.loops.At(target)
	if err != nil {
		return nil, toStatus(fmt.Errorf("check what is mounted at target %s: %w", target, err))
	}
	if !isLoop {
		return nil, nil
	}
	return &d, nil
}
