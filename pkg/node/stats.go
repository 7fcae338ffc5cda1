package node

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// NodeGetVolumeStats reports a volume's usage against its capacity.
// volume_path must be the volume's directory or a place where it is
// bind-mounted; anything else is NotFound. For a block volume, volume_path
// must be a target where its loop device is published, and the answer is
// what CSI asks for a block volume: the device's size in bytes as total. A volume whose directory is
// missing or unreadable is FailedPrecondition with the reason (the details
// are in NodeGetVolumeHealth); this is checked before volume_path, because a
// bind mount of a deleted directory no longer shows up as one of the
// volume's mounts, and "not published" would hide the real problem. No lock:
// it only reads.
func (s *Server) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	if err := validateNodeGetVolumeStats(req); err != nil {
		return nil, err
	}
	id, path := req.GetVolumeId(), req.GetVolumePath()
	if v, ok := s.ephemeralOf(id); ok {
		// The kubelet asks about an inline volume by its own handle.
		id = v.ID
	}
	v, source, err := s.volumeDir(id)
	if err != nil {
		return nil, err
	}
	if issues := volume.Blocking(s.vols.Health(v)); len(issues) > 0 {
		msg := issues[0].Message
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s cannot be measured: %s", id, msg)
	}
	if v.Block {
		return s.blockStats(v, path)
	}
	published, err := s.publishedAt(source, path)
	if err != nil {
		return nil, toStatus(fmt.Errorf("find where volume %s is mounted: %w", id, err))
	}
	if !published {
		return nil, status.Errorf(codes.NotFound, "volume %s is not published at %.200q", id, path)
	}

	usage, err := s.vols.Usage(v)
	if err != nil {
		return nil, toStatus(fmt.Errorf("measure volume %s: %w", id, err))
	}
	fsStat, err := s.vols.FS(v)
	if err != nil {
		return nil, toStatus(fmt.Errorf("stat the filesystem of volume %s: %w", id, err))
	}
	return &csi.NodeGetVolumeStatsResponse{
		Usage: []*csi.VolumeUsage{
			{
				Unit:      csi.VolumeUsage_BYTES,
				Total:     v.CapacityBytes,
				Used:      usage.Bytes,
				Available: max(0, v.CapacityBytes-usage.Bytes),
			},
			{
				Unit:      csi.VolumeUsage_INODES,
				Total:     fsStat.TotalInodes,
				Used:      usage.Inodes,
				Available: fsStat.FreeInodes,
			},
		},
	}, nil
}

// publishedAt reports whether path is the volume's directory or one of the
// places it is bind-mounted.
func (s *Server) publishedAt(source, path string) (bool, error) {
	if !filepath.IsAbs(path) {
		return false, nil
	}
	path = canonical(path)
	if path == canonical(source) {
		return true, nil
	}
	refs, err := s.mounter.GetMountRefs(source)
	if err != nil {
		return false, err
	}
	return slices.Contains(refs, path), nil
}

// blockStats reports the size of the loop device of block volume v that is
// published at path.
func (s *Server) blockStats(v volume.Volume, path string) (*csi.NodeGetVolumeStatsResponse, error) {
	d, published, err := s.blockPublishedAt(v, path)
	if err != nil {
		return nil, toStatus(fmt.Errorf("find where volume %s is published: %w", v.ID, err))
	}
	if !published {
		return nil, status.Errorf(codes.NotFound, "volume %s is not published at %.200q", v.ID, path)
	}
	size, err := s.loops.Size(d.Path)
	if err != nil {
		return nil, toStatus(fmt.Errorf("size of loop device %s of volume %s: %w", d.Path, v.ID, err))
	}
	return &csi.NodeGetVolumeStatsResponse{
		Usage: []*csi.VolumeUsage{{Unit: csi.VolumeUsage_BYTES, Total: size}},
	}, nil
}
