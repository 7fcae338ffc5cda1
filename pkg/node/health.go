package node

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/csihealth"
	"k8s.io/klog/v2"
)

// reasonNotMounted is the health reason for a volume missing from the path
// it was published at.
const reasonNotMounted = "NotMounted"

// NodeGetVolumeHealth reports what is wrong with a volume on this node: its
// directory missing or unreadable, its pool not configured, or, when
// volume_publish_path is given, the volume (for a block volume, its loop
// device) no longer mounted there. An empty
// list means healthy. No lock: it only reads.
func (s *Server) NodeGetVolumeHealth(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	if err := validateNodeGetVolumeHealth(req); err != nil {
		return nil, err
	}
	id, path := req.GetVolumeId(), req.GetVolumePublishPath()
	v, source, err := s.volumeDir(id)
	if err != nil {
		return nil, err
	}
	h := csihealth.FromIssues(id, s.vols.Health(v))
	if path != "" && len(h.HealthStatuses) == 0 {
		var published bool
		if v.Block {
			_, published, err = s.blockPublishedAt(v, path)
		} else {
			published, err = s.publishedAt(source, path)
		}
		if err != nil {
			return nil, toStatus(fmt.Errorf("find where volume %s is mounted: %w", id, err))
		}
		if !published {
			h.HealthStatuses = append(h.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{
				Status:  csi.VolumeHealthErrorType_INACCESSIBLE,
				Reason:  reasonNotMounted,
				Message: fmt.Sprintf("volume %s is not mounted at %s; whatever uses that path does not see the volume's data", id, path),
			})
		}
	}
	if len(h.HealthStatuses) > 0 {
		klog.FromContext(ctx).V(4).Info("Volume is not healthy", "volumeID", id, "reason", h.HealthStatuses[0].GetReason())
	}
	return &csi.NodeGetVolumeHealthResponse{VolumeHealth: h}, nil
}
