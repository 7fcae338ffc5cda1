package controller

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/csierr"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ControllerModifyVolume applies the mutable parameters of a
// VolumeAttributesClass to an existing volume: onDelete, in the volume's
// record (see parseMutableParameters for why nothing else can change). A
// volume that already has them is OK, so retries are no-ops.
//
// The volume's record is in the catalog of the node that holds it, and
// csi-resizer, which sends this call, is leader-elected: it calls the
// driver of its own node. A volume this node does not hold is NotFound,
// with a message saying where the call arrived; csi-resizer keeps retrying,
// and the change is made once the call reaches the node that holds the
// volume. Unlike expansion, there is no node-side call to finish it there.
//
// Lock: the volume ID (the same as DeleteVolume's, so a delete never runs
// with a policy read before the change).
func (s *Server) ControllerModifyVolume(ctx context.Context, req *csi.ControllerModifyVolumeRequest) (*csi.ControllerModifyVolumeResponse, error) {
	if err := validateControllerModifyVolume(req); err != nil {
		return nil, err
	}
	mutable, _ := parseMutableParameters(req.GetMutableParameters()) // checked by validateControllerModifyVolume
	id := req.GetVolumeId()
	if !volume.ValidID(id) {
		return nil, status.Errorf(codes.NotFound, "%.64q is not a volume ID issued by this driver", id)
	}
	unlock, err := s.lock(lockVolumeID(id))
	if err != nil {
		return nil, err
	}
	defer unlock()

	here, err := s.vols.Holds(id)
	if err != nil {
		return nil, csierr.Status(err)
	}
	if !here {
		return nil, status.Errorf(codes.NotFound,
			"volume %s is not in the catalog of node %q, where this call arrived; each node changes only the volumes it holds, "+
				"so if the volume is on another node, the call must reach that node's driver (csi-resizer calls the driver of "+
				"the node where it is the leader)", id, s.cfg.NodeID)
	}
	if _, err := s.vols.Modify(ctx, id, volume.ModifyRequest{OnDelete: mutable.onDelete}); err != nil {
		return nil, csierr.Status(err)
	}
	return &csi.ControllerModifyVolumeResponse{}, nil
}
