package controller

import (
	"context"
	"errors"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/csierr"
	"github.com/dirvol/dirvol/pkg/capability"
	"github.com/dirvol/dirvol/pkg/topology"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// CreateVolume makes a volume on this node, empty or with the content of a
// snapshot (restore) or volume (clone) this node holds, or returns the
// existing volume with the same name. Locks: the volume name; for a restore
// or clone also the source's ID, so that the source is not deleted,
// expanded or snapshotted while it is being copied.
func (s *Server) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if err := validateCreateVolume(req); err != nil {
		return nil, err
	}
	params, err := parseParameters(req.GetParameters())
	if err != nil {
		return nil, invalid("%v", err)
	}
	// The VolumeAttributesClass of the claim, if any, has the last word on
	// what it sets (checked by validateCreateVolume).
	mutable, _ := parseMutableParameters(req.GetMutableParameters())
	if mutable.onDelete != "" {
		params.onDelete = mutable.onDelete
	}
	block, _ := capability.Block(req.GetVolumeCapabilities()) // checked by validateCreateVolume
	snapID := req.GetVolumeContentSource().GetSnapshot().GetSnapshotId()
	srcVolID := req.GetVolumeContentSource().GetVolume().GetVolumeId()
	if !topology.Allows(req.GetAccessibilityRequirements(), s.cfg.NodeID) {
		// CSI: ResourceExhausted is the code for "cannot be provisioned with
		// the specified topology constraints", and external-provisioner
		// answers it by letting the scheduler pick another node.
		if src := sourceName(snapID, srcVolID); src != "" {
			return nil, status.Errorf(codes.ResourceExhausted,
				"accessibility_requirements exclude node %q, the only node this driver instance provisions on (%s=%s); "+
					"a volume made from %s is made on the node that holds the source, so the request must allow that node",
				s.cfg.NodeID, topology.NodeKey, s.cfg.NodeID, src)
		}
		return nil, status.Errorf(codes.ResourceExhausted,
			"accessibility_requirements exclude node %q, the only node this driver instance provisions on (%s=%s)",
			s.cfg.NodeID, topology.NodeKey, s.cfg.NodeID)
	}
	unlock, err := s.lock(lockVolumeName(req.GetName()), lockSnapshotID(snapID), lockVolumeID(srcVolID)) // at most one source is set
	if err != nil {
		return nil, err
	}
	defer unlock()

	v, err := s.vols.Create(ctx, volume.CreateRequest{
		Name:             req.GetName(),
		Pool:             params.pool,
		RequiredBytes:    req.GetCapacityRange().GetRequiredBytes(),
		LimitBytes:       req.GetCapacityRange().GetLimitBytes(),
		OnDelete:         params.onDelete,
		Permissions:      params.perm,
		Parameters:       req.GetParameters(),
		PVCNamespace:     params.pvcNamespace,
		PVCName:          params.pvcName,
		PVName:           params.pvName,
		Block:            block,
		SourceSnapshotID: snapID,
		SourceVolumeID:   srcVolID,
	})
	if errors.Is(err, volume.ErrSourceNotFound) {
		err = fmt.Errorf("%w; the source is not on node %q: restores and clones are placed on the node that holds the source, so the volume must be provisioned there",
			err, s.cfg.NodeID)
	}
	if err != nil {
		return nil, csierr.Status(err)
	}
	return &csi.CreateVolumeResponse{Volume: s.csiVolume(v)}, nil
}

// sourceName says what a content source is, for messages; "" for none.
func sourceName(snapshotID, volumeID string) string {
	switch {
	case snapshotID != "":
		return fmt.Sprintf("snapshot %.64q", snapshotID)
	case volumeID != "":
		return fmt.Sprintf("volume %.64q", volumeID)
	}
	return ""
}

// DeleteVolume applies the volume's onDelete policy. An ID this driver never
// issued, or one already deleted, is success, as the CSI spec requires. A
// volume still mounted on this node (published) is FailedPrecondition and
// stays as it is.
// Snapshots of the volume are independent copies and stay. Lock: the volume
// ID.
func (s *Server) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if err := validateDeleteVolume(req); err != nil {
		return nil, err
	}
	id := req.GetVolumeId()
	unlock, err := s.lock(lockVolumeID(id))
	if err != nil {
		return nil, err
	}
	defer unlock()

	err = s.vols.Delete(ctx, id)
	if errors.Is(err, volume.ErrNotFound) {
		// CSI: deleting a volume that does not exist is success.
		klog.FromContext(ctx).V(2).Info("Volume to delete does not exist; nothing to do", "volumeID", id)
		return &csi.DeleteVolumeResponse{}, nil
	}
	if err != nil {
		return nil, csierr.Status(err)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// ValidateVolumeCapabilities confirms the capabilities dirvol can serve for
// an existing volume. No lock: it reads one catalog record.
func (s *Server) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if err := validateValidateVolumeCapabilities(req); err != nil {
		return nil, err
	}
	v, err := s.vols.Get(req.GetVolumeId())
	if err != nil {
		return nil, csierr.Status(err)
	}
	block, err := capability.Block(req.GetVolumeCapabilities())
	if err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	if block != v.Block {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: fmt.Sprintf(
			"volume %s is a %s volume; it cannot be used with %s access", v.ID, accessName(v.Block), accessName(block))}, nil
	}
	if _, err := parseParameters(req.GetParameters()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	if _, err := parseMutableParameters(req.GetMutableParameters()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
		MutableParameters:  req.GetMutableParameters(),
	}}, nil
}

// ControllerGetVolume describes one volume. No lock.
func (s *Server) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	if err := validateControllerGetVolume(req); err != nil {
		return nil, err
	}
	v, err := s.vols.Get(req.GetVolumeId())
	if err != nil {
		return nil, csierr.Status(err)
	}
	return &csi.ControllerGetVolumeResponse{
		Volume: s.csiVolume(v),
		Status: &csi.ControllerGetVolumeResponse_VolumeStatus{},
	}, nil
}

func accessName(block bool) string {
	if block {
		return "block"
	}
	return "filesystem (mount)"
}

// csiVolume is the CSI view of a volume record.
func (s *Server) csiVolume(v volume.Volume) *csi.Volume {
	out := &csi.Volume{
		VolumeId:           v.ID,
		CapacityBytes:      v.CapacityBytes,
		VolumeContext:      map[string]string{paramPool: v.Pool, paramOnDelete: v.OnDelete},
		AccessibleTopology: []*csi.Topology{topology.ForNode(s.cfg.NodeID)},
	}
	switch {
	case v.SourceSnapshotID != "":
		out.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: v.SourceSnapshotID}}}
	case v.SourceVolumeID != "":
		out.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: v.SourceVolumeID}}}
	}
	return out
}
