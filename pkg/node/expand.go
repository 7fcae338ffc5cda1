package node

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// NodeExpandVolume grows a volume on the node that holds it. Each node keeps
// the records of its own volumes, so this is where the record changes when
// the ControllerExpandVolume that asked for the size was answered by the
// driver of another node: the volume core grows the pool's limit (and a
// block volume's file) and the record, and does nothing when the volume is
// already that large. A block volume's loop devices are then told the new
// size of their file, so that a pod using the device sees it at once.
// volume_path is checked for its shape only: the size belongs to the
// volume, wherever it is published. capacity_range is required (after the
// volume is found, so that an unknown volume is NotFound whatever else the
// request lacks). A limit below the current size is OutOfRange: volumes
// never shrink. Lock: the volume ID (so no publish or
// unpublish changes the volume's loop devices meanwhile).
func (s *Server) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	if err := validateNodeExpandVolume(req); err != nil {
		return nil, err
	}
	id := req.GetVolumeId()
	unlock, err := s.lockVolume(id)
	if err != nil {
		return nil, err
	}
	defer unlock()

	v, _, err := s.volumeDir(id)
	if err != nil {
		return nil, err
	}
	if c := req.GetVolumeCapability(); c != nil {
		if err := checkAccessType(c, v); err != nil {
			return nil, err
		}
	}
	r := req.GetCapacityRange()
	if r == nil {
		return nil, status.Errorf(codes.InvalidArgument, "capacity_range is required: it says what size to grow volume %s (now %d bytes) to", id, v.CapacityBytes)
	}
	v, err = s.vols.Expand(ctx, id, r.GetRequiredBytes(), r.GetLimitBytes())
	if err != nil {
		return nil, toStatus(err)
	}
	if v.Block {
		file, err := s.vols.BlockPath(v)
		if err != nil {
			return nil, toStatus(fmt.Errorf("find the block file of volume %s: %w", id, err))
		}
		devs, err := s.loops.Find(file)
		if err != nil {
			return nil, toStatus(fmt.Errorf("find the loop devices of volume %s: %w", id, err))
		}
		for _, d := range devs {
			size, err := s.loops.Refresh(d.Path)
			if err != nil {
				return nil, toStatus(fmt.Errorf("volume %s grew to %d bytes but its loop device %s still has the old size; retry: %w", id, v.CapacityBytes, d.Path, err))
			}
			klog.FromContext(ctx).V(2).Info("Loop device resized", "volumeID", id, "device", d.Path, "sizeBytes", size)
		}
	}
	return &csi.NodeExpandVolumeResponse{CapacityBytes: v.CapacityBytes}, nil
}
