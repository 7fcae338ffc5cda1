package controller

import (
	"context"
	"errors"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/csierr"
	"github.com/dirvol/dirvol/pkg/capability"
	"github.com/dirvol/dirvol/pkg/topology"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/klog/v2"
)

// GetCapacity reports what the pool named by the parameters (the default
// pool when none) can still promise:
//
//	available = filesystem free space (statfs f_bavail * f_bsize)
//	          - sum over the pool's volumes of max(0, capacity - bytes used)
//
// Bytes used per volume come from the last measurement (NodeGetVolumeStats
// or the periodic usage refresh); a volume not yet measured counts as empty,
// so its whole size stays promised. On a "dir" pool sizes are reserved this
// way but not enforced: a volume that writes past its size eats into the
// free space of the others. maximum_volume_size is the largest volume the
// pool can promise now, the size beyond which CreateVolume answers
// ResourceExhausted; a volume takes its space from one filesystem, so it is
// the same figure. A topology other than this node, or a capability dirvol
// cannot serve, has capacity 0. No lock.
func (s *Server) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	if err := validateGetCapacity(req); err != nil {
		return nil, err
	}
	// A StorageClass with a parameter CreateVolume would refuse still gets
	// the capacity of the pool it names: with storageCapacity enabled, an
	// error or a zero here keeps its pods Pending for "not enough storage"
	// and CreateVolume, whose ProvisioningFailed event names the bad
	// parameter, is never called.
	pool := req.GetParameters()[paramPool]
	if params, err := parseParameters(req.GetParameters()); err == nil {
		pool = params.pool
	} else {
		klog.FromContext(ctx).V(4).Info("Capacity reported for a StorageClass that CreateVolume will refuse", "reason", err.Error())
	}
	if t := req.GetAccessibleTopology(); t != nil {
		if !topology.Allows(&csi.TopologyRequirement{Requisite: []*csi.Topology{t}}, s.cfg.NodeID) {
			return &csi.GetCapacityResponse{}, nil
		}
	}
	if len(req.GetVolumeCapabilities()) > 0 {
		if err := capability.CheckAll(req.GetVolumeCapabilities()); err != nil {
			klog.FromContext(ctx).V(4).Info("No capacity for unsupported capabilities", "reason", err.Error())
			return &csi.GetCapacityResponse{}, nil
		}
	}
	c, err := s.vols.Capacity(pool)
	if errors.Is(err, volume.ErrUnknownPool) {
		// Pools are per node: a class naming a pool this node lacks gets
		// no capacity here, so the scheduler picks a node that has it.
		return &csi.GetCapacityResponse{}, nil
	}
	if err != nil {
		return nil, csierr.Status(err)
	}
	return &csi.GetCapacityResponse{
		AvailableCapacity: c.Available,
		MaximumVolumeSize: wrapperspb.Int64(c.MaxVolume),
	}, nil
}
