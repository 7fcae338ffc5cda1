package node

import (
	"context"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/topology"
)

func TestNodeGetInfo(t *testing.T) {
	e := newEnv(t)
	resp, err := e.srv.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetNodeId() != testNode {
		t.Errorf("node_id = %q, want %q", resp.GetNodeId(), testNode)
	}
	if resp.GetMaxVolumesPerNode() != 10 {
		t.Errorf("max_volumes_per_node = %d, want 10", resp.GetMaxVolumesPerNode())
	}
	segs := resp.GetAccessibleTopology().GetSegments()
	if len(segs) != 1 || segs[topology.NodeKey] != testNode {
		t.Errorf("accessible_topology = %v, want {%s: %s}", segs, topology.NodeKey, testNode)
	}
}

func TestNodeGetCapabilities(t *testing.T) {
	e := newEnv(t)
	resp, err := e.srv.NodeGetCapabilities(context.Background(), &csi.NodeGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []csi.NodeServiceCapability_RPC_Type
	for _, c := range resp.GetCapabilities() {
		got = append(got, c.GetRpc().GetType())
	}
	want := []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
	}
	if !slices.Equal(got, want) {
		t.Errorf("capabilities = %v, want %v", got, want)
	}
	// The driver publishes straight from the volume directory; advertising
	// staging would make the kubelet call NodeStageVolume, which is not
	// implemented.
	for _, c := range got {
		if c == csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME {
			t.Errorf("capability %s is advertised but not implemented", c)
		}
	}
}
