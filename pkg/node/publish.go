//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/volume"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// targetMode is the mode of a target directory the driver creates.
const targetMode = 0o750

// NodePublishVolume bind-mounts the volume's directory at target_path,
// read-only when the request or its access mode says so. A block volume is
// attached to a loop device whose node is bind-mounted on target_path, a
// file (see publishBlock). Publishing again with the same read-only-ness is
// success. Lock: lockPublish (volume ID + target path, and volume ID), and
// the volume core's hold on the volume, which DeleteVolume also takes.
//
// The target is opened without following symbolic links and the mount is
// attached to the opened directory (openTarget, binder): a link anywhere in
// the path is InvalidArgument, and a path changed under the call cannot
// redirect the mount. Where the volume is already mounted comes from the
// kernel (the mount table, what the target shows), not from memory, so it
// survives restarts. For SINGLE_NODE_SINGLE_WRITER the request is refused
// while the volume is mounted anywhere else, and the volume lock makes that
// look and the mount one step; the reverse (a volume first published as
// single writer, then asked for elsewhere with another mode) is the CO's to
// refuse, since a mount does not record the access mode it was made for.
func (s *Server) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if isEphemeral(req) {
		return s.publishEphemeral(ctx, req) // see ephemeral.go
	}
	if err := validateNodePublishVolume(req); err != nil {
		return nil, err
	}
	id, target := req.GetVolumeId(), filepath.Clean(req.GetTargetPath())
	unlock, err := s.lockPublish(id, target)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// DeleteVolume looks for mounts before it removes anything; holding
	// the volume keeps it from looking between this lookup and the mount.
	release, err := s.vols.Hold(id)
	if err != nil {
		return nil, toStatus(err)
	}
	defer release()

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
	t, err := s.openTarget(target, true)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	if v.Block {
		if err := s.publishBlock(ctx, req, v, t); err != nil {
			return nil, err
		}
		return &csi.NodePublishVolumeResponse{}, nil
	}
	ro := readOnly(req)
	logger := klog.FromContext(ctx)

	if t.file != nil {
		if !t.isDir() {
			return nil, status.Errorf(codes.InvalidArgument,
				"target_path %s exists and is a %s; a filesystem volume is published on a directory", target, kindOf(t.st))
		}
		shows, err := s.binds.Shows(t.file, source)
		if err != nil {
			return nil, toStatus(fmt.Errorf("check what target %s shows: %w", target, err))
		}
		if shows {
			mountedRO, err := s.mountedReadOnly(target)
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
		switch mounted, err := s.mounter.IsMountPoint(target); {
		case err != nil:
			return nil, toStatus(fmt.Errorf("check whether %s is a mount point: %w", target, err))
		case mounted:
			return nil, status.Errorf(codes.FailedPrecondition,
				"something else is mounted at target %s (%s); unpublish or unmount it before publishing volume %s there",
				target, s.describeMount(target), id)
		}
	}
	// The volume lock is held: no other publish of this volume can mount
	// between this look and the mount below.
	mode := req.GetVolumeCapability().GetAccessMode().GetMode()
	if mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER {
		refs, err := s.mounter.GetMountRefs(source)
		if err != nil {
			return nil, toStatus(fmt.Errorf("find where volume %s is mounted: %w", id, err))
		}
		if len(refs) > 0 {
			return nil, status.Errorf(codes.FailedPrecondition,
				"volume %s has access mode %s and is already published at %v; unpublish it there first",
				id, mode, refs)
		}
	}

	created := false
	if t.file == nil {
		if err := unix.Mkdirat(int(t.parent.Fd()), t.name, targetMode); err != nil {
			return nil, toStatus(fmt.Errorf("create target %s: %w", target, err))
		}
		created = true
		if err := t.reopen(); err != nil || !t.isDir() {
			s.undoPublish(ctx, t, created)
			return nil, toStatus(fmt.Errorf("open the new target %s: %w", target, errors.Join(err, errNotDir)))
		}
	}
	flags := mountOptions(req)[1:]
	if err := s.binds.Bind(source, t.file, flags); err != nil {
		s.undoPublish(ctx, t, created)
		return nil, toStatus(fmt.Errorf("bind-mount volume %s at %s with flags %v: %w", id, target, flags, err))
	}
	logger.V(2).Info("Volume published", "volumeID", id, "targetPath", target, "source", source,
		"readOnly", ro, "flags", flags)
	return &csi.NodePublishVolumeResponse{}, nil
}

// openTarget opens target without following symbolic links (creating
// missing parent directories when mkParents) and checks it against the
// driver's own directories by identity. Errors are status errors, except a
// missing component without mkParents, which wraps unix.ENOENT.
func (s *Server) openTarget(target string, mkParents bool) (*openedTarget, error) {
	t, err := openTarget(target, mkParents)
	if err != nil {
		if errors.Is(err, unix.ENOENT) && !mkParents {
			return nil, err
		}
		return nil, toStatus(fmt.Errorf("target_path %s: %w", target, err))
	}
	if err := s.checkOpenedTarget(t); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// undoPublish cleans up after a failed publish: the target goes if this
// publish created it and it is still an empty directory or empty file.
// Bind attaches the mount in its last step, so a failed Bind leaves no
// mount behind.
func (s *Server) undoPublish(ctx context.Context, t *openedTarget, created bool) {
	logger := klog.FromContext(ctx)
	if !created {
		return
	}
	if err := t.reopen(); err != nil {
		logger.Error(err, "Cannot check the target of a failed publish", "targetPath", t.path)
		return
	}
	if t.file == nil {
		return
	}
	flags := 0
	if t.isDir() {
		flags = unix.AT_REMOVEDIR
	} else if t.st.Size != 0 {
		return
	}
	if err := unix.Unlinkat(int(t.parent.Fd()), t.name, flags); err != nil && !errors.Is(err, unix.ENOENT) {
		logger.Error(err, "Cannot remove the target of a failed publish", "targetPath", t.path)
	}
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
