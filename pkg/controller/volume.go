package controller

import (
	"context"
	"errors"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/capability"
	"github.com/dirvol/dirvol/pkg/topology"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// CreateVolume makes a volume on this node or returns the existing one with
// the same name. Lock: the volume name.
func (s *Server) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if err := validateCreateVolume(req); err != nil {
		return nil, err
	}
	params, err := parseParameters(req.GetParameters())
	if err != nil {
		return nil, toStatus(err)
	}
	if !topology.Allows(req.GetAccessibilityRequirements(), s.cfg.NodeID) {
		return nil, status.Errorf(codes.ResourceExhausted,
			"accessibility_requirements exclude node %q, the only node this driver instance provisions on (%s=%s)",
			s.cfg.NodeID, topology.NodeKey, s.cfg.NodeID)
	}
	if !s.names.TryLock(req.GetName()) {
		return nil, status.Errorf(codes.Aborted, "an operation on volume name %q is already in progress", req.GetName())
	}
	defer s.names.Unlock(req.GetName())

	v, err := s.vols.Create(ctx, volume.CreateRequest{
		Name:          req.GetName(),
		Pool:          params.pool,
		RequiredBytes: req.GetCapacityRange().GetRequiredBytes(),
		LimitBytes:    req.GetCapacityRange().GetLimitBytes(),
		OnDelete:      params.onDelete,
		Permissions:   params.perm,
		Parameters:    req.GetParameters(),
		PVCNamespace:  params.pvcNamespace,
		PVCName:       params.pvcName,
		PVName:        params.pvName,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &csi.CreateVolumeResponse{Volume: s.csiVolume(v)}, nil
}

// DeleteVolume applies the volume's onDelete policy. An ID this driver never
// issued, or one already deleted, is success, as the CSI spec requires.
// Lock: the volume ID.
func (s *Server) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if err := validateDeleteVolume(req); err != nil {
		return nil, err
	}
	id := req.GetVolumeId()
	if !s.ids.TryLock(id) {
		return nil, status.Errorf(codes.Aborted, "an operation on volume %s is already in progress", id)
	}
	defer s.ids.Unlock(id)

	err := s.vols.Delete(ctx, id)
	if errors.Is(err, volume.ErrNotFound) {
		klog.FromContext(ctx).V(2).Info("Volume to delete does not exist; nothing to do", "volumeID", id)
		return &csi.DeleteVolumeResponse{}, nil
	}
	if errors.Is(err, volume.ErrUnknownPool) {
		// Not a bad request: the volume exists, but this start was not
		// given its pool. Nothing was changed.
		return nil, status.Errorf(codes.FailedPrecondition, "%v; start the driver with that --pool again, then retry", err)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// ValidateVolumeCapabilities confirms the capabilities dirvol can serve for
// an existing volume. No lock: it reads one catalog record.
func (s *Server) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if err := validateValidateVolumeCapabilities(req); err != nil {
		return nil, err
	}
	if _, err := s.vols.Get(req.GetVolumeId()); err != nil {
		return nil, toStatus(err)
	}
	if err := capability.CheckAll(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	if _, err := parseParameters(req.GetParameters()); err != nil {
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
		return nil, toStatus(err)
	}
	return &csi.ControllerGetVolumeResponse{
		Volume: s.csiVolume(v),
		Status: &csi.ControllerGetVolumeResponse_VolumeStatus{},
	}, nil
}

// csiVolume is the CSI view of a volume record.
func (s *Server) csiVolume(v volume.Volume) *csi.Volume {
	return &csi.Volume{
		VolumeId:           v.ID,
		CapacityBytes:      v.CapacityBytes,
		VolumeContext:      map[string]string{paramPool: v.Pool, paramOnDelete: v.OnDelete},
		AccessibleTopology: []*csi.Topology{topology.ForNode(s.cfg.NodeID)},
	}
}
