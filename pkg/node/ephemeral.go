//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"
)

// CSI ephemeral inline volumes: a pod's inline `csi:` volume. The kubelet
// sends NodePublishVolume with volume_context holding the volume's
// volumeAttributes and csi.storage.k8s.io/ephemeral=true, and a volume_id
// of its own (csi-<sha256 of pod UID and volume name>), and later
// NodeUnpublishVolume with the same ID. No CreateVolume or DeleteVolume is
// ever sent for them, so the node service makes the volume at publish and
// deletes it at unpublish, through the volume core like any other: it is
// recorded (named after the kubelet's ID, marked with
// volume.EphemeralParameter), reserves its size in its pool (so capacity
// counts it), has its size enforced on a btrfs pool, and a crash at any
// instant is finished or rolled back at the next start like any create or
// delete. The kubelet retries a publish cut off by a crash, and unpublishes
// every volume it published (or may have) when the pod goes, so what a
// crash left is deleted then.

// publishEphemeral makes the inline volume of req, or finds the one a
// previous call made, and publishes it as NodePublishVolume publishes any
// volume. A volume this call made is deleted again when its publish fails,
// since the kubelet does not unpublish what it was told failed. Lock:
// lockPublish on the kubelet's ID and the target, then NodePublishVolume's
// own on the volume.
func (s *Server) publishEphemeral(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	handle, target := req.GetVolumeId(), filepath.Clean(req.GetTargetPath())
	if !ephemeralHandle.MatchString(handle) {
		return nil, invalid("volume_id %.80q is not the kubelet's handle of an inline volume (csi-<64 hex digits>)", handle)
	}
	if req.GetVolumeCapability().GetBlock() != nil {
		return nil, invalid("volume_capability: an inline volume is a filesystem volume; block access is for persistent volumes")
	}
	if err := validatePublishShape(req); err != nil {
		return nil, err
	}
	attrs, err := parseEphemeralAttributes(req.GetVolumeContext())
	if err != nil {
		return nil, err
	}
	unlock, err := s.lockPublish(handle, target)
	if err != nil {
		return nil, err
	}
	defer unlock()

	_, err = s.vols.EphemeralByName(handle)
	existed := err == nil
	v, err := s.vols.Create(ctx, volume.CreateRequest{
		Name:          handle,
		Pool:          attrs.pool,
		RequiredBytes: attrs.bytes,
		OnDelete:      volume.OnDeleteDelete,
		Permissions:   pool.Permissions{Mode: 0o777, UID: -1, GID: -1},
		Parameters:    attrs.record,
	})
	if err != nil {
		return nil, toStatus(fmt.Errorf("make inline volume %s: %w", handle, err))
	}
	inner := proto.Clone(req).(*csi.NodePublishVolumeRequest)
	inner.VolumeId, inner.VolumeContext = v.ID, nil
	resp, err := s.NodePublishVolume(ctx, inner)
	if err != nil && !existed {
		if derr := s.vols.Delete(ctx, v.ID); derr != nil && !errors.Is(derr, volume.ErrNotFound) {
			klog.FromContext(ctx).Error(derr, "Cannot delete the inline volume of a failed publish; the kubelet's unpublish deletes it",
				"volumeID", v.ID, "handle", handle)
		}
	}
	if err == nil {
		klog.FromContext(ctx).V(2).Info("Inline volume published", "handle", handle, "volumeID", v.ID, "targetPath", target,
			"pod", attrs.record[attrPodNamespace]+"/"+attrs.record[attrPodName], "capacityBytes", v.CapacityBytes)
	}
	return resp, err
}

// unpublishEphemeral unpublishes inline volume v, as NodeUnpublishVolume
// unpublishes any volume, then deletes it. A crash between the two leaves
// the volume unpublished and recorded; the kubelet's retry finds it and
// deletes it. Lock: lockPublish on the kubelet's ID and the target, then
// NodeUnpublishVolume's own on the volume.
func (s *Server) unpublishEphemeral(ctx context.Context, req *csi.NodeUnpublishVolumeRequest, v volume.Volume) (*csi.NodeUnpublishVolumeResponse, error) {
	handle, target := req.GetVolumeId(), filepath.Clean(req.GetTargetPath())
	unlock, err := s.lockPublish(handle, target)
	if err != nil {
		return nil, err
	}
	defer unlock()
	inner := proto.Clone(req).(*csi.NodeUnpublishVolumeRequest)
	inner.VolumeId = v.ID
	resp, err := s.NodeUnpublishVolume(ctx, inner)
	if err != nil {
		return nil, err
	}
	if err := s.vols.Delete(ctx, v.ID); err != nil && !errors.Is(err, volume.ErrNotFound) {
		return nil, toStatus(fmt.Errorf("delete inline volume %s (%s) after unpublishing it: %w", handle, v.ID, err))
	}
	klog.FromContext(ctx).V(2).Info("Inline volume unpublished and deleted", "handle", handle, "volumeID", v.ID, "targetPath", target)
	return resp, nil
}
