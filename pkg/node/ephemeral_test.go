//go:build linux

package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/disktree"
	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/internal/testfs"
	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"
)

// handle is a kubelet handle of an inline volume: csi-<sha256 hex>.
var handle = "csi-" + strings.Repeat("ab", 32)

func ephemeralReq(target string, attrs map[string]string) *csi.NodePublishVolumeRequest {
	ctx := map[string]string{
		"csi.storage.k8s.io/ephemeral":     "true",
		"csi.storage.k8s.io/pod.name":      "web-0",
		"csi.storage.k8s.io/pod.namespace": "default",
		"csi.storage.k8s.io/pod.uid":       "0f0e0d0c-0000-4000-8000-000000000001",
	}
	for k, v := range attrs {
		ctx[k] = v
	}
	r := rwReq(handle, target)
	r.VolumeContext = ctx
	return r
}

func (e *testEnv) unpublishEphemeral(t *testing.T, target string) {
	t.Helper()
	if _, err := e.srv.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: handle, TargetPath: target}); err != nil {
		t.Fatalf("NodeUnpublishVolume(%s at %s): %v", handle, target, err)
	}
}

// promised is what the default pool has promised to volumes.
func (e *testEnv) promised(t *testing.T) int64 {
	t.Helper()
	c, err := e.vols.Capacity("")
	if err != nil {
		t.Fatal(err)
	}
	return c.Promised
}

// wantNoVolumes fails when the catalog lists a volume or the pool holds a
// volume directory.
func (e *testEnv) wantNoVolumes(t *testing.T) {
	t.Helper()
	if l := e.vols.List(); len(l) != 0 {
		t.Errorf("volumes left: %+v", l)
	}
	entries, _ := os.ReadDir(filepath.Join(e.root, "pool", "volumes"))
	if len(entries) != 0 {
		t.Errorf("volume directories left in the pool: %v", entries)
	}
	if p := e.promised(t); p != 0 {
		t.Errorf("%d bytes still promised", p)
	}
}

func TestEphemeralLifecycle(t *testing.T) {
	e := newEnv(t)
	target := e.target("inline")
	req := ephemeralReq(target, map[string]string{"size": "16Mi"})
	e.publish(t, req)

	v, err := e.vols.EphemeralByName(handle)
	if err != nil {
		t.Fatalf("no inline volume recorded: %v", err)
	}
	if v.CapacityBytes != 16<<20 || v.Pool != "default" || v.OnDelete != string(volume.OnDeleteDelete) {
		t.Errorf("inline volume = %+v, want 16Mi in pool default with onDelete delete", v)
	}
	dir, _ := e.vols.Path(v)
	wantMount(t, e, dir, target, "bind")
	if p := e.promised(t); p != 16<<20 {
		t.Errorf("pool promises %d bytes, want the inline volume's 16Mi counted", p)
	}
	// The kubelet measures it by its own handle.
	stats, err := e.srv.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: handle, VolumePath: target})
	if err != nil {
		t.Fatalf("NodeGetVolumeStats(%s): %v", handle, err)
	}
	if len(stats.GetUsage()) == 0 {
		t.Errorf("NodeGetVolumeStats(%s) reports no usage", handle)
	}
	// The kubelet publishes again after a restart of its own: same volume.
	e.publish(t, req)
	if again, _ := e.vols.EphemeralByName(handle); again.ID != v.ID {
		t.Errorf("a second publish made volume %s, want %s again", again.ID, v.ID)
	}
	wantMount(t, e, dir, target, "bind")

	e.unpublishEphemeral(t, target)
	if mps := e.mountsAt(target); len(mps) != 0 {
		t.Errorf("mounts left at %s: %v", target, mps)
	}
	wantNoPath(t, target)
	e.wantNoVolumes(t)
	// A retry of the unpublish finds nothing to do.
	e.unpublishEphemeral(t, target)
}

// A restart of the driver between publish and unpublish, or between the
// record and the mount of a publish, leaves nothing behind once the kubelet
// unpublishes.
func TestEphemeralAfterRestart(t *testing.T) {
	tests := []struct {
		name    string
		publish func(t *testing.T, e *testEnv, target string)
	}{
		{name: "published", publish: func(t *testing.T, e *testEnv, target string) {
			e.publish(t, ephemeralReq(target, nil))
		}},
		{name: "made, not yet mounted", publish: func(t *testing.T, e *testEnv, target string) {
			attrs, err := parseEphemeralAttributes(ephemeralReq(target, nil).GetVolumeContext())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.vols.Create(context.Background(), volume.CreateRequest{
				Name: handle, OnDelete: volume.OnDeleteDelete, Parameters: attrs.record,
			}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			target := e.target("inline")
			tt.publish(t, e, target)
			// The same disk and mount table, a new driver process.
			restarted := newEnvAt(t, e.root, newManager(t, e.root, true), e.mnt, e.loops)
			restarted.unpublishEphemeral(t, target)
			if mps := e.mountsAt(target); len(mps) != 0 {
				t.Errorf("mounts left at %s: %v", target, mps)
			}
			wantNoPath(t, target)
			restarted.wantNoVolumes(t)
		})
	}
}

func TestEphemeralRefused(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(r *csi.NodePublishVolumeRequest)
		want   codes.Code
		word   string
	}{
		{"unknown attribute", func(r *csi.NodePublishVolumeRequest) { r.VolumeContext["iops"] = "100" }, codes.InvalidArgument, `"iops"`},
		{"StorageClass parameter", func(r *csi.NodePublishVolumeRequest) { r.VolumeContext["onDelete"] = "archive" }, codes.InvalidArgument, `"onDelete"`},
		{"size not a quantity", func(r *csi.NodePublishVolumeRequest) { r.VolumeContext["size"] = "big" }, codes.InvalidArgument, `"size"`},
		{"size zero", func(r *csi.NodePublishVolumeRequest) { r.VolumeContext["size"] = "0" }, codes.InvalidArgument, `"size"`},
		{"size negative", func(r *csi.NodePublishVolumeRequest) { r.VolumeContext["size"] = "-1Gi" }, codes.InvalidArgument, `"size"`},
		{"size too large", func(r *csi.NodePublishVolumeRequest) { r.VolumeContext["size"] = "2Ei" }, codes.InvalidArgument, `"size"`},
		{"empty pool", func(r *csi.NodePublishVolumeRequest) { r.VolumeContext["pool"] = "" }, codes.InvalidArgument, `"pool"`},
		{"unknown pool", func(r *csi.NodePublishVolumeRequest) { r.VolumeContext["pool"] = "../x" }, codes.InvalidArgument, `"../x"`},
		{"not a kubelet handle", func(r *csi.NodePublishVolumeRequest) { r.VolumeId = "../../etc" }, codes.InvalidArgument, "volume_id"},
		{"block", func(r *csi.NodePublishVolumeRequest) {
			r.VolumeCapability = &csi.VolumeCapability{
				AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
				AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
			}
		}, codes.InvalidArgument, "block"},
		{"relative target", func(r *csi.NodePublishVolumeRequest) { r.TargetPath = "pods/x" }, codes.InvalidArgument, "target_path"},
		// The publish fails after the volume is made: it is deleted again.
		{"target is a file with data", func(r *csi.NodePublishVolumeRequest) {
			if err := os.MkdirAll(filepath.Dir(r.TargetPath), 0o755); err != nil {
				panic(err)
			}
			if err := os.WriteFile(r.TargetPath, []byte("x"), 0o644); err != nil {
				panic(err)
			}
		}, codes.InvalidArgument, "target_path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			req := ephemeralReq(e.target("inline"), nil)
			tt.mutate(req)
			before, err := disktree.Describe(e.root)
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.srv.NodePublishVolume(context.Background(), req)
			if status.Code(err) != tt.want || !strings.Contains(err.Error(), tt.word) {
				t.Fatalf("NodePublishVolume = %v, want %v saying %s", err, tt.want, tt.word)
			}
			e.wantNoVolumes(t)
			after, err := disktree.Describe(e.root)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range disktree.Diff(before, after) {
				if !strings.Contains(d, "catalog") {
					t.Errorf("changed: %s", d)
				}
			}
		})
	}
}

// On a btrfs pool an inline volume's size attribute is enforced: a pod
// cannot write past it. Real mounts, on a btrfs filesystem made for the
// test.
func TestEphemeralSizeEnforcedOnBtrfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a btrfs pool and real bind mounts need root")
	}
	mounter := mount.New("")
	skipWithoutBindMounts(t, mounter)
	root := t.TempDir()
	p, err := pool.NewBtrfs("default", filepath.Join(testfs.Mount(t, testfs.Btrfs, 512<<20), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	cat, problems, err := catalog.Open(filepath.Join(root, "catalog"))
	if err != nil || len(problems) > 0 {
		t.Fatalf("catalog.Open: %v %v", err, problems)
	}
	vols, err := volume.New(cat, map[string]pool.Pool{"default": p}, "default", 1<<30, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := vols.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := newEnvAt(t, root, vols, mounter, loopdev.New())
	target := e.target("inline")
	t.Cleanup(func() {
		if mounted, err := mounter.IsMountPoint(target); err == nil && mounted {
			_ = mounter.Unmount(target)
		}
	})
	e.publish(t, ephemeralReq(target, map[string]string{"size": "8Mi"}))

	// 16 MiB into an 8 MiB volume, synced so the quota sees it.
	f, err := os.Create(filepath.Join(target, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	var werr error
	written := 0
	for range 16 {
		if _, werr = f.Write(chunk); werr != nil {
			break
		}
		if werr = f.Sync(); werr != nil {
			break
		}
		written += len(chunk)
	}
	f.Close()
	if werr == nil {
		t.Fatalf("wrote %d bytes into an inline volume of 8Mi on btrfs without an error", written)
	}
	t.Logf("write stopped after %d bytes: %v", written, werr)

	e.unpublishEphemeral(t, target)
	if l := vols.List(); len(l) != 0 {
		t.Errorf("volumes left: %+v", l)
	}
}

// A persistent volume that a CO happened to name like a kubelet handle is
// never published as, or deleted as, an inline volume.
func TestEphemeralNeverTakesAPersistentVolume(t *testing.T) {
	e := newEnv(t)
	v, dir := e.create(t, handle)
	target := e.target("inline")
	_, err := e.srv.NodePublishVolume(context.Background(), ephemeralReq(target, nil))
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("NodePublishVolume of an inline volume named like persistent volume %s = %v, want AlreadyExists", v.ID, err)
	}
	wantNoPath(t, target)
	e.publish(t, rwReq(v.ID, target))
	// The kubelet's unpublish of the inline handle leaves the persistent
	// volume's mount and data alone (it answers OK: nothing of an inline
	// volume is at the target).
	if _, err := e.srv.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: handle, TargetPath: target}); err != nil {
		t.Errorf("NodeUnpublishVolume of the handle: %v", err)
	}
	wantMount(t, e, dir, target, "bind")
	if _, err := e.vols.Get(v.ID); err != nil {
		t.Errorf("persistent volume %s: %v", v.ID, err)
	}
}
