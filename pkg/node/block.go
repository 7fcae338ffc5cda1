//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/pkg/volume"
	"golang.org/x/sys/unix"
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

// publishBlock exposes block volume v at the opened target t: it reuses
// the volume's loop device of the right access or attaches one, creates the
// target as an empty file and bind-mounts the device node on it. The caller
// holds lockPublish. Whatever it attached is detached again when a later
// step fails.
func (s *Server) publishBlock(ctx context.Context, req *csi.NodePublishVolumeRequest, v volume.Volume, t *openedTarget) error {
	id, target := v.ID, t.path
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

	if t.file != nil {
		// Published here already? Only a mount point is asked what device
		// it is.
		mounted, err := s.mounter.IsMountPoint(target)
		if err != nil {
			return toStatus(fmt.Errorf("check whether %s is a mount point: %w", target, err))
		}
		if mounted {
			return s.blockPublishedHere(ctx, id, t, devs, ro)
		}
		// The CO creates a block target as an empty file, or leaves it to
		// the driver: anything else holds someone else's data.
		switch {
		case t.st.Mode&unix.S_IFMT != unix.S_IFREG:
			return status.Errorf(codes.InvalidArgument,
				"target_path %s exists and is a %s; a block volume is published on an empty file, which the driver creates when it is missing", target, kindOf(t.st))
		case t.st.Size != 0:
			return status.Errorf(codes.InvalidArgument,
				"target_path %s is a file holding %d bytes; a block volume is published on an empty file, which the driver creates when it is missing", target, t.st.Size)
		}
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
		if _, err := s.releaseDevice(ctx, dev, true); err != nil {
			logger.Error(err, "Cannot detach the loop device of a failed publish; unpublish or the next start will", "volumeID", id, "device", dev.Path)
		}
	}
	created, err := makeBlockTarget(t)
	if err != nil {
		s.undoPublish(ctx, t, created)
		undo()
		return err
	}
	var flags []string
	if ro {
		flags = append(flags, "ro")
	}
	if err := s.binds.Bind(dev.Path, t.file, flags); err != nil {
		s.undoPublish(ctx, t, created)
		undo()
		return toStatus(fmt.Errorf("bind-mount loop device %s of volume %s at %s with flags %v: %w", dev.Path, id, target, flags, err))
	}
	logger.V(2).Info("Volume published", "volumeID", id, "targetPath", target, "device", dev.Path,
		"file", file, "readOnly", ro, "newDevice", attached, "directIO", dev.DirectIO)
	return nil
}

// blockPublishedHere answers a publish at a target that is a mount point:
// success when it shows one of the volume's devices with the requested
// access, else a refusal that says what is there.
func (s *Server) blockPublishedHere(ctx context.Context, id string, t *openedTarget, devs []loopdev.Device, ro bool) error {
	for _, d := range devs {
		shows, err := s.binds.Shows(t.file, d.Path)
		if err != nil {
			return toStatus(fmt.Errorf("check what target %s shows: %w", t.path, err))
		}
		if !shows {
			continue
		}
		if d.ReadOnly != ro {
			return status.Errorf(codes.AlreadyExists,
				"volume %s is already published at %s %s, and this request asks for %s; unpublish it first",
				id, t.path, accessWord(d.ReadOnly), accessWord(ro))
		}
		klog.FromContext(ctx).V(4).Info("Volume already published", "volumeID", id, "targetPath", t.path, "device", d.Path, "readOnly", ro)
		return nil
	}
	return status.Errorf(codes.FailedPrecondition,
		"something else is mounted at target %s (%s); unpublish or unmount it before publishing volume %s there", t.path, s.describeMount(t.path), id)
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

// makeBlockTarget creates the missing target t as an empty file, and
// reports whether it did; an existing empty file (checked by the caller) is
// used as it is.
func makeBlockTarget(t *openedTarget) (bool, error) {
	if t.file != nil {
		return false, nil
	}
	fd, err := unix.Openat(int(t.parent.Fd()), t.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, targetFileMode)
	if err != nil {
		return false, toStatus(fmt.Errorf("create target file %s: %w", t.path, err))
	}
	if err := unix.Close(fd); err != nil {
		return true, toStatus(fmt.Errorf("create target file %s: %w", t.path, err))
	}
	if err := t.reopen(); err != nil {
		return true, toStatus(fmt.Errorf("open target file %s: %w", t.path, err))
	}
	if t.file == nil || t.st.Mode&unix.S_IFMT != unix.S_IFREG {
		return true, status.Errorf(codes.Aborted, "target_path %s changed while it was being created; retry", t.path)
	}
	return true, nil
}

// kindOf names the type of a file for messages.
func kindOf(st unix.Stat_t) string {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFLNK:
		return "symbolic link"
	case unix.S_IFBLK:
		return "block device node"
	case unix.S_IFCHR:
		return "character device node"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "special file"
}

// releaseBlock detaches, after an unpublish, the loop devices of block
// volume src that no mount uses any more: the devices that were at the
// target, and every device of the volume's file (also one a crash between
// unmount and detach left behind). The caller holds the volume's lock.
// Nothing is done for a volume that is not a block volume of this node.
func (s *Server) releaseBlock(ctx context.Context, id string, src volumeSource, devs []loopdev.Device) error {
	if !src.block {
		return nil
	}
	found, err := s.loops.Find(src.path)
	if err != nil {
		return toStatus(fmt.Errorf("find the loop devices of volume %s: %w", id, err))
	}
	for _, d := range found {
		if !slices.ContainsFunc(devs, func(o loopdev.Device) bool { return o.Path == d.Path }) {
			devs = append(devs, d)
		}
	}
	for _, d := range devs {
		// Every device here was found by the identity of the volume's
		// file, whatever path the kernel reports for it.
		detached, err := s.releaseDevice(ctx, d, true)
		if err != nil {
			return toStatus(fmt.Errorf("detach loop device %s of volume %s: %w", d.Path, id, err))
		}
		if detached {
			klog.FromContext(ctx).V(2).Info("Loop device detached", "volumeID", id, "device", d.Path, "file", d.BackingFile)
		}
	}
	return nil
}

// releaseDevice detaches d when no mount uses it and it is the driver's,
// and reports whether it did (or the kernel will, at the device's last
// close). A device is the driver's when owned says it was found by the
// identity (device and inode numbers) of a volume's block file, or else
// when the path the kernel reports for its backing file is in one of the
// pools. That path alone is not enough: the kernel reports it as seen
// through the mount the file was opened by, and once that mount has left
// every mount namespace (the driver's container restarted) it is relative
// to the mount's root (/volumes/vol-.../block.img) and lies in no pool.
// Bind mounts of the device node do not hold the device open, so they are
// counted in the mount table (in it, a bind mount of /dev/loopN is
// devtmpfs with root /loopN); a filesystem mounted from the device, or
// another driver on it, makes Detach answer ErrBusy. A detach the kernel
// defers because a program has the device open (often only for a moment:
// a scan of the loop devices) is waited for briefly, so that the device
// is usually gone when the unpublish returns; DeleteVolume refuses the
// volume while it is attached. The caller holds the lock of the volume
// that owns d, when one does.
func (s *Server) releaseDevice(ctx context.Context, d loopdev.Device, owned bool) (bool, error) {
	if !owned && !s.inPool(d.BackingFile) {
		return false, nil
	}
	refs, err := s.loops.BindMounts(d.Path)
	if err != nil {
		return false, fmt.Errorf("find the mounts of %s: %w", d.Path, err)
	}
	if len(refs) > 0 {
		return false, nil
	}
	err = s.loops.Detach(d.Path)
	if errors.Is(err, loopdev.ErrDeferred) {
		s.awaitDetach(ctx, d)
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// deferredDetachWait bounds how long releaseDevice waits for a detach the
// kernel deferred.
const deferredDetachWait = 2 * time.Second

// awaitDetach waits, up to deferredDetachWait, for the deferred detach of
// d, and logs when the device is still attached then.
func (s *Server) awaitDetach(ctx context.Context, d loopdev.Device) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	deadline := time.Now().Add(deferredDetachWait)
	for {
		cur, ok, err := s.loops.At(d.Path)
		if err == nil && (!ok || cur.BackingFile != d.BackingFile) {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	klog.FromContext(ctx).Info("Loop device held open by another program; the kernel detaches it when that program closes it, and DeleteVolume refuses its volume until then",
		"device", d.Path, "file", d.BackingFile)
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
