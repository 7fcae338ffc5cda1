package hostile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/cmd/driver/app"
	"github.com/dirvol/dirvol/pkg/pool"
	"google.golang.org/grpc/codes"
)

// TestDataDirUnreachable runs the driver with the default pool outside the
// data directory (--pool name=default,path=P): the data directory, with the
// catalog, is no pool root, and still no target may reach it.
func TestDataDirUnreachable(t *testing.T) {
	e := startWith(t, func(e *env, cfg *app.Config) {
		cfg.Pools = append(cfg.Pools, pool.Spec{Name: "default", Path: filepath.Join(e.root, "default-pool")})
	})
	resp, err := e.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "own", VolumeCapabilities: rwCaps()})
	wantStatus(t, err, codes.OK)
	id := resp.GetVolume().GetVolumeId()
	for _, target := range []string{e.data, e.data + "/catalog", e.data + "/catalog/volumes", e.data + "/fresh"} {
		t.Run(target, func(t *testing.T) {
			before := e.snap(t)
			_, err := e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: rwCaps()[0]})
			wantStatus(t, err, codes.InvalidArgument, "target_path", "data directory")
			_, err = e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
			wantStatus(t, err, codes.InvalidArgument, "target_path", "data directory")
			e.unchanged(t, before)
		})
	}
}

// TestUnpublishLeavesWhatIsNotItsOwn unpublishes a volume from targets that
// hold something else: a tmpfs, another volume, a file with data. Nothing
// of it is unmounted or removed.
func TestUnpublishLeavesWhatIsNotItsOwn(t *testing.T) {
	e := start(t)
	own, _ := e.create(t, "own", nil)
	other, otherDir := e.create(t, "other", nil)
	writeFile(t, filepath.Join(otherDir, "data.txt"), "other volume's data")

	tmpfs := filepath.Join(e.root, "pods/pod-1/volumes/tmp")
	must(t, os.MkdirAll(tmpfs, 0o750))
	must(t, e.mounter.Mount("tmpfs", tmpfs, "tmpfs", []string{"size=1m"}))
	writeFile(t, filepath.Join(tmpfs, "scratch.txt"), "someone else's data")
	shared := filepath.Join(e.root, "pods/pod-2/volumes/other")
	_, err := e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: other, TargetPath: shared, VolumeCapability: rwCaps()[0]})
	wantStatus(t, err, codes.OK)
	file := filepath.Join(e.root, "pods/pod-3/volumes/dev")
	must(t, os.MkdirAll(filepath.Dir(file), 0o750))
	writeFile(t, file, "a file that is not a target the driver made")

	before := e.snap(t)
	for target, want := range map[string]codes.Code{tmpfs: codes.OK, shared: codes.OK, file: codes.FailedPrecondition} {
		_, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: own, TargetPath: target})
		wantStatus(t, err, want)
	}
	e.unchanged(t, before)

	_, err = e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: other, TargetPath: shared})
	wantStatus(t, err, codes.OK)
	must(t, e.mounter.Unmount(tmpfs))
}

// TestBlockTargetWithData publishes a block volume onto a file that holds
// data: refused, and the unpublish that follows leaves the file.
func TestBlockTargetWithData(t *testing.T) {
	e := start(t)
	resp, err := e.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "blk", VolumeCapabilities: []*csi.VolumeCapability{blockCap()},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}})
	wantStatus(t, err, codes.OK)
	id := resp.GetVolume().GetVolumeId()
	target := filepath.Join(e.root, "pods/pod-1/volumeDevices/blk")
	must(t, os.MkdirAll(filepath.Dir(target), 0o750))
	writeFile(t, target, "not a device")
	before := e.snap(t)
	_, err = e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: blockCap()})
	wantStatus(t, err, codes.InvalidArgument, "holding 12 bytes")
	_, err = e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
	wantStatus(t, err, codes.FailedPrecondition, "left in place")
	e.unchanged(t, before)
}

// TestDeletePublishedVolume deletes volumes still published: refused, with
// the target named, and nothing changed, until they are unpublished.
func TestDeletePublishedVolume(t *testing.T) {
	e := start(t)
	for _, c := range []*csi.VolumeCapability{rwCaps()[0], blockCap()} {
		block := c.GetBlock() != nil
		t.Run(map[bool]string{false: "mount", true: "block"}[block], func(t *testing.T) {
			resp, err := e.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pub-" + map[bool]string{false: "fs", true: "blk"}[block],
				VolumeCapabilities: []*csi.VolumeCapability{c}, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}})
			wantStatus(t, err, codes.OK)
			id := resp.GetVolume().GetVolumeId()
			target := filepath.Join(e.root, "pods/pod-1/volumes", id)
			_, err = e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: c})
			wantStatus(t, err, codes.OK)
			if !block {
				writeFile(t, filepath.Join(target, "live.txt"), "written by the pod")
			}
			before := e.snap(t)
			_, err = e.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			wantStatus(t, err, codes.FailedPrecondition, target, "unpublish")
			e.unchanged(t, before)

			_, err = e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
			wantStatus(t, err, codes.OK)
			_, err = e.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			wantStatus(t, err, codes.OK)
		})
	}
}
