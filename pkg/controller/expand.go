package controller

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/csierr"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// ControllerExpandVolume grows a volume. Every node runs its own driver,
// and the authoritative record of a volume is in the catalog of the node
// that holds it; the external-resizer that calls this RPC is leader-elected
// and may run on any node. So:
//   - a volume this node holds is grown here (limit or reservation, and a
//     block volume's file); node_expansion_required is true only for a
//     block volume, whose loop device must pick up the new size;
//   - a well-formed volume ID this node does not hold is left alone: the
//     answer is OK with capacity_bytes = required_bytes and
//     node_expansion_required = true, and NodeExpandVolume on the node
//     that holds the volume grows it there, where a refusal (no space,
//     shrinking) is reported;
//   - an ID of a shape this driver never issues is NotFound.
//
// Lock: the volume ID.
func (s *Server) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	if err := validateControllerExpandVolume(req); err != nil {
		return nil, err
	}
	id := req.GetVolumeId()
	if !volume.ValidID(id) {
		return nil, status.Errorf(codes.NotFound, "%.64q is not a volume ID issued by this driver", id)
	}
	unlock, err := s.lock(lockVolumeID(id))
	if err != nil {
		return nil, err
	}
	defer unlock()

	required, limit := req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes()
	here, err := s.vols.Holds(id)
	if err != nil {
		return nil, csierr.Status(err)
	}
	if !here {
		klog.FromContext(ctx).Info("Volume is not held by this node; the node that holds it grows it in NodeExpandVolume",
			"volumeID", id, "nodeID", s.cfg.NodeID, "requiredBytes", required, "limitBytes", limit)
		return &csi.ControllerExpandVolumeResponse{CapacityBytes: required, NodeExpansionRequired: true}, nil
	}
	v, err := s.vols.Expand(ctx, id, required, limit)
	if err != nil {
		return nil, csierr.Status(err)
	}
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: v.CapacityBytes, NodeExpansionRequired: v.Block}, nil
}
