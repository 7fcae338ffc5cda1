package controller

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/disktree"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/topology"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const testNode = "node-a"

// testEnv is a controller over a real catalog and dir pools in a temp dir.
type testEnv struct {
	srv  *Server
	vols *volume.Manager
	root string
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	return newEnvWith(t, func(p pool.Pool) pool.Pool { return p })
}

// fixedStat reports a fixed filesystem, so that capacity figures do not move
// with whatever else writes to the machine's disk.
type fixedStat struct {
	pool.Pool
	fs pool.FS
}

func (p fixedStat) Stat() (pool.FS, error) { return p.fs, nil }

// newEnvWith is newEnv with each pool passed through wrap.
func newEnvWith(t *testing.T, wrap func(pool.Pool) pool.Pool) *testEnv {
	t.Helper()
	root := t.TempDir()
	return newEnvAt(t, root, filepath.Join(root, "catalog"), wrap)
}

// newEnvAt starts a controller over pools under root and the catalog in
// catDir, reading whatever they already hold, as a restart does.
func newEnvAt(t *testing.T, root, catDir string, wrap func(pool.Pool) pool.Pool) *testEnv {
	t.Helper()
	cat, problems, err := catalog.Open(catDir)
	if err != nil || len(problems) > 0 {
		t.Fatalf("catalog.Open: %v %v", err, problems)
	}
	pools := map[string]pool.Pool{}
	for _, name := range []string{"default", "fast"} {
		p, err := pool.NewDir(name, filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		pools[name] = wrap(p)
	}
	vols, err := volume.New(cat, pools, "default", 1<<20, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := vols.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{NodeID: testNode}, vols)
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{srv: srv, vols: vols, root: root}
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func createReq(name string, params map[string]string) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{
		Name:               name,
		CapacityRange:      &csi.CapacityRange{RequiredBytes: 1 << 20},
		VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)},
		Parameters:         params,
	}
}

func (e *testEnv) create(t *testing.T, name string, params map[string]string) *csi.Volume {
	t.Helper()
	resp, err := e.srv.CreateVolume(context.Background(), createReq(name, params))
	if err != nil {
		t.Fatalf("CreateVolume(%s): %v", name, err)
	}
	return resp.GetVolume()
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code = %v (%v), want %v", got, err, want)
	}
}

// tree describes every path under root, to show that nothing changed.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out, err := disktree.Describe(root)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestNewRequiresNodeID(t *testing.T) {
	if _, err := New(Config{}, nil); err == nil {
		t.Fatal("New with empty node ID succeeded")
	}
}

func TestControllerGetCapabilities(t *testing.T) {
	e := newEnv(t)
	resp, err := e.srv.ControllerGetCapabilities(context.Background(), &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[csi.ControllerServiceCapability_RPC_Type]bool{}
	for _, c := range resp.GetCapabilities() {
		got[c.GetRpc().GetType()] = true
	}
	for _, want := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		csi.ControllerServiceCapability_RPC_GET_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_GET_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csi.ControllerServiceCapability_RPC_MODIFY_VOLUME,
	} {
		if !got[want] {
			t.Errorf("capability %v missing", want)
		}
	}
	if got[csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME] {
		t.Error("PUBLISH_UNPUBLISH_VOLUME advertised, but the driver has no attach step")
	}
}

func TestCreateVolumeTopology(t *testing.T) {
	e := newEnv(t)
	v := e.create(t, "pv-topo", nil)
	if len(v.GetAccessibleTopology()) != 1 || v.GetAccessibleTopology()[0].GetSegments()[topology.NodeKey] != testNode {
		t.Fatalf("accessible topology = %v, want this node only", v.GetAccessibleTopology())
	}
	req := createReq("pv-elsewhere", nil)
	req.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{topology.ForNode("node-b")}}
	_, err := e.srv.CreateVolume(context.Background(), req)
	wantCode(t, err, codes.ResourceExhausted)
}
