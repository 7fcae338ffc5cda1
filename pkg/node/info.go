package node

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/topology"
)

// capabilities are what the node service does. There is no STAGE_UNSTAGE:
// neither a directory nor a block volume's file needs per-node preparation
// shared by its targets, so the kubelet publishes straight from the volume
// (a block volume's loop device is attached at its first publish).
// EXPAND_VOLUME: the node that holds a volume records its new size and
// tells a block volume's loop devices. A volume's condition is reported by
// NodeGetVolumeHealth (GET_VOLUME_HEALTH), which replaced the
// VOLUME_CONDITION capability in CSI 1.13.
var capabilities = []csi.NodeServiceCapability_RPC_Type{
	csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
	csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
	csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
}

// NodeGetCapabilities lists what the node service does. No lock.
func (s *Server) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	out := make([]*csi.NodeServiceCapability, 0, len(capabilities))
	for _, c := range capabilities {
		out = append(out, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: c}},
		})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: out}, nil
}

// NodeGetInfo names this node, its volume limit and its topology, which is
// the topology of every volume made here. No lock.
func (s *Server) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{
		NodeId:             s.cfg.NodeID,
		MaxVolumesPerNode:  s.cfg.MaxVolumes,
		AccessibleTopology: topology.ForNode(s.cfg.NodeID),
	}, nil
}
