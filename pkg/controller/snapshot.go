package controller

import (
	"context"
	"errors"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/csierr"
	"github.com/dirvol/dirvol/pkg/topology"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/klog/v2"
)

// CreateSnapshot takes a snapshot of a volume this node holds, or returns
// the existing snapshot with the same name of the same volume. The snapshot
// is complete when the call returns (ready_to_use is always true): a copy
// with reflinks where the filesystem has them, or a btrfs snapshot. Locks:
// the snapshot name, then the source volume's ID, so that the volume is not
// deleted or expanded while it is being copied.
func (s *Server) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if err := validateCreateSnapshot(req); err != nil {
		return nil, err
	}
	name, src := req.GetName(), req.GetSourceVolumeId()
	if r := req.GetAccessibilityRequirements(); r != nil && !topology.Allows(r, s.cfg.NodeID) {
		// A snapshot, like its volume, is usable only on the node that
		// holds it; CSI's code for "not with this topology" is
		// ResourceExhausted.
		return nil, status.Errorf(codes.ResourceExhausted,
			"accessibility_requirements exclude node %q (%s=%s), the node that holds volume %.64q and would hold its snapshot",
			s.cfg.NodeID, topology.NodeKey, s.cfg.NodeID, src)
	}
	unlock, err := s.lock(lockSnapshotName(name), lockVolumeID(src))
	if err != nil {
		return nil, err
	}
	defer unlock()

	snap, err := s.vols.CreateSnapshot(ctx, volume.SnapshotRequest{
		Name:           name,
		SourceVolumeID: src,
		Parameters:     req.GetParameters(),
	})
	if errors.Is(err, volume.ErrNotFound) {
		err = fmt.Errorf("%w; the source volume is not on node %q: a snapshot is taken by the driver on the node that holds its volume",
			err, s.cfg.NodeID)
	}
	if err != nil {
		return nil, csierr.Status(err)
	}
	return &csi.CreateSnapshotResponse{Snapshot: s.csiSnapshot(snap)}, nil
}

// DeleteSnapshot removes a snapshot. An ID this driver never issued, or one
// already deleted, is success, as the CSI spec requires. Volumes restored
// from the snapshot are independent of it and stay. Lock: the snapshot ID.
func (s *Server) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if err := validateDeleteSnapshot(req); err != nil {
		return nil, err
	}
	id := req.GetSnapshotId()
	unlock, err := s.lock(lockSnapshotID(id))
	if err != nil {
		return nil, err
	}
	defer unlock()

	err = s.vols.DeleteSnapshot(ctx, id)
	switch {
	case errors.Is(err, volume.ErrSnapshotNotFound):
		// CSI: deleting a snapshot that does not exist is success.
		klog.FromContext(ctx).V(2).Info("Snapshot to delete does not exist; nothing to do", "snapshotID", id)
		return &csi.DeleteSnapshotResponse{}, nil
	case err != nil:
		return nil, csierr.Status(err)
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots pages through the snapshots of this node, optionally only
// one (snapshot_id) or those of one volume (source_volume_id); an unknown ID
// in either filter gives an empty list. No lock: it reads a catalog
// snapshot.
func (s *Server) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if err := validateListSnapshots(req); err != nil {
		return nil, err
	}
	all := s.vols.ListSnapshots()
	if id := req.GetSnapshotId(); id != "" {
		all = filter(all, func(sn volume.Snapshot) bool { return sn.ID == id })
	}
	if src := req.GetSourceVolumeId(); src != "" {
		all = filter(all, func(sn volume.Snapshot) bool { return sn.SourceVolumeID == src })
	}
	snaps, next, err := page(all, snapshotID, volume.ValidSnapshotID, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	out := &csi.ListSnapshotsResponse{NextToken: next, Entries: make([]*csi.ListSnapshotsResponse_Entry, 0, len(snaps))}
	for _, sn := range snaps {
		out.Entries = append(out.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: s.csiSnapshot(sn)})
	}
	return out, nil
}

// GetSnapshot describes one snapshot. No lock.
func (s *Server) GetSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	if err := validateGetSnapshot(req); err != nil {
		return nil, err
	}
	sn, err := s.vols.GetSnapshot(req.GetSnapshotId())
	if err != nil {
		return nil, csierr.Status(err)
	}
	return &csi.GetSnapshotResponse{Snapshot: s.csiSnapshot(sn)}, nil
}

func snapshotID(sn volume.Snapshot) string { return sn.ID }

func filter[T any](items []T, keep func(T) bool) []T {
	out := items[:0:0]
	for _, it := range items {
		if keep(it) {
			out = append(out, it)
		}
	}
	return out
}

// csiSnapshot is the CSI view of a snapshot record. Only ready snapshots
// are ever returned, so ready_to_use is always true. accessible_topology is
// left out: the plugin does not advertise SNAPSHOT_ACCESSIBILITY_CONSTRAINTS
// because Kubernetes does not read it (restores are placed by the pod's
// node, see README) and csi-sanity v5.6.0 compares the field with
// reflect.DeepEqual, which fails on protobuf messages that went through a
// marshal.
func (s *Server) csiSnapshot(sn volume.Snapshot) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:     sn.ID,
		SourceVolumeId: sn.SourceVolumeID,
		SizeBytes:      sn.SizeBytes,
		CreationTime:   timestamppb.New(sn.CreatedAt),
		ReadyToUse:     true,
	}
}
