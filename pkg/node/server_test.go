package node

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
	mount "k8s.io/mount-utils"
)

const testNode = "node-a"

// testEnv is a node service over a real catalog and dir pool in a temp dir.
type testEnv struct {
	srv  *Server
	vols *volume.Manager
	mnt  *mount.FakeMounter
	// loops is a *fakeLoops with a fake mounter, the host's loop devices
	// with a real one.
	loops loopDevices
	// root holds the catalog and the pool; pods is an empty directory for
	// target paths.
	root, pods string
}

// newManager returns a volume manager over a fresh catalog and pool under
// root, recovered (ready) when recover is set.
func newManager(t testing.TB, root string, recover bool, opts ...volume.Option) *volume.Manager {
	t.Helper()
	cat, problems, err := catalog.Open(filepath.Join(root, "catalog"))
	if err != nil || len(problems) > 0 {
		t.Fatalf("catalog.Open: %v %v", err, problems)
	}
	p, err := pool.NewDir("default", filepath.Join(root, "pool"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := volume.New(cat, map[string]pool.Pool{"default": p}, "default", 1<<30, time.Now, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if recover {
		if err := m.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// newEnvWith returns a node service using mounter, and the host's loop
// devices when mounter is the real one, else fake loop devices that read
// mounter's table.
func newEnvWith(t testing.TB, mounter mount.Interface) *testEnv {
	t.Helper()
	var loops loopDevices = newFakeLoops(mounter)
	if _, real := mounter.(*mount.Mounter); real {
		loops = loopdev.New()
	}
	root := t.TempDir()
	return newEnvAt(t, root, newManager(t, root, true), mounter, loops)
}

// newEnvAt returns a node service over vols, whose catalog and pool are
// under root.
func newEnvAt(t testing.TB, root string, vols *volume.Manager, mounter mount.Interface, loops loopDevices) *testEnv {
	t.Helper()
	srv, err := newServer(Config{NodeID: testNode, MaxVolumes: 10}, vols, mounter, binderFor(mounter), loops)
	if err != nil {
		t.Fatal(err)
	}
	fake, _ := mounter.(*mount.FakeMounter)
	return &testEnv{srv: srv, vols: vols, mnt: fake, loops: loops, root: root, pods: filepath.Join(root, "pods")}
}

// binderFor returns the kernel's binder for the real mounter, else a fake
// that records into the fake mounter's table.
func binderFor(mounter mount.Interface) binder {
	if fake, ok := mounter.(*mount.FakeMounter); ok {
		return fakeBinder{mounter: fake}
	}
	return kernelBinder{}
}

func newEnv(t *testing.T) *testEnv { return newEnvWith(t, mount.NewFakeMounter(nil)) }

// create makes a volume and returns it with its directory.
func (e *testEnv) create(t testing.TB, name string) (volume.Volume, string) {
	t.Helper()
	v, err := e.vols.Create(context.Background(), volume.CreateRequest{
		Name:        name,
		OnDelete:    volume.OnDeleteDelete,
		Permissions: pool.Permissions{Mode: 0o777, UID: -1, GID: -1},
	})
	if err != nil {
		t.Fatalf("Create(%s): %v", name, err)
	}
	dir, err := e.vols.Path(v)
	if err != nil {
		t.Fatal(err)
	}
	return v, dir
}

// target returns a path under the env's pods directory.
func (e *testEnv) target(name string) string { return filepath.Join(e.pods, name, "mount") }

func mountCap(mode csi.VolumeCapability_AccessMode_Mode, flags ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{MountFlags: flags}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func publishReq(id, target string, c *csi.VolumeCapability) *csi.NodePublishVolumeRequest {
	return &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: c}
}

func rwReq(id, target string) *csi.NodePublishVolumeRequest {
	return publishReq(id, target, mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER))
}

// publish publishes a volume and fails the test on error.
func (e *testEnv) publish(t *testing.T, req *csi.NodePublishVolumeRequest) {
	t.Helper()
	if _, err := e.srv.NodePublishVolume(context.Background(), req); err != nil {
		t.Fatalf("NodePublishVolume(%s at %s): %v", req.GetVolumeId(), req.GetTargetPath(), err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "minimal", cfg: Config{NodeID: "node-a"}},
		{name: "with limit", cfg: Config{NodeID: "ip-10-0-0-1.ec2.internal", MaxVolumes: 100}},
		{name: "no node ID", cfg: Config{}, wantErr: "node ID is required"},
		{name: "node ID not a label value", cfg: Config{NodeID: "node/a"}, wantErr: "not a Kubernetes label value"},
		{name: "node ID too long for a label", cfg: Config{NodeID: strings.Repeat("a", 64)}, wantErr: "not a Kubernetes label value"},
		{name: "node ID ends with a dash", cfg: Config{NodeID: "node-"}, wantErr: "not a Kubernetes label value"},
		{name: "negative limit", cfg: Config{NodeID: "node-a", MaxVolumes: -1}, wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNew(t *testing.T) {
	vols := newManager(t, t.TempDir(), true)
	fake := mount.NewFakeMounter(nil)
	tests := []struct {
		name    string
		cfg     Config
		vols    *volume.Manager
		mounter mount.Interface
		wantErr bool
	}{
		{name: "ok", cfg: Config{NodeID: testNode}, vols: vols, mounter: fake},
		{name: "invalid config", cfg: Config{}, vols: vols, mounter: fake, wantErr: true},
		{name: "no volume manager", cfg: Config{NodeID: testNode}, mounter: fake, wantErr: true},
		{name: "no mounter", cfg: Config{NodeID: testNode}, vols: vols, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := New(tt.cfg, tt.vols, tt.mounter)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New() error = %v, wantErr %t", err, tt.wantErr)
			}
			if err == nil && srv == nil {
				t.Fatal("New() returned a nil server and no error")
			}
		})
	}
}

func TestNewServerWithoutLoopDevices(t *testing.T) {
	_, err := newServer(Config{NodeID: testNode}, newManager(t, t.TempDir(), true), mount.NewFakeMounter(nil), kernelBinder{}, nil)
	if err == nil {
		t.Fatal("newServer() without loop devices succeeded")
	}
}
