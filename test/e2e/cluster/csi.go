package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// DriverInfo is what the kubelet learns from a driver at registration
// (GetPluginInfo, NodeGetInfo) plus its controller capabilities.
type DriverInfo struct {
	DriverName   string
	NodeID       string
	MaxVolumes   int64
	Topology     map[string]string
	Capabilities map[csi.ControllerServiceCapability_RPC_Type]bool
}

// queryDriver waits for the driver on socket to report ready and collects
// its DriverInfo.
func queryDriver(ctx context.Context, socket string) (DriverInfo, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return DriverInfo{}, err
	}
	defer conn.Close()
	identity := csi.NewIdentityClient(conn)
	for {
		resp, err := identity.Probe(ctx, &csi.ProbeRequest{})
		if err == nil && (resp.GetReady() == nil || resp.GetReady().GetValue()) {
			break
		}
		select {
		case <-ctx.Done():
			return DriverInfo{}, fmt.Errorf("driver on %s not ready (last error: %v): %w", socket, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	plugin, err := identity.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil {
		return DriverInfo{}, fmt.Errorf("GetPluginInfo: %w", err)
	}
	node, err := csi.NewNodeClient(conn).NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil {
		return DriverInfo{}, fmt.Errorf("NodeGetInfo: %w", err)
	}
	caps, err := csi.NewControllerClient(conn).ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		return DriverInfo{}, fmt.Errorf("ControllerGetCapabilities: %w", err)
	}
	info := DriverInfo{
		DriverName:   plugin.GetName(),
		NodeID:       node.GetNodeId(),
		MaxVolumes:   node.GetMaxVolumesPerNode(),
		Topology:     node.GetAccessibleTopology().GetSegments(),
		Capabilities: map[csi.ControllerServiceCapability_RPC_Type]bool{},
	}
	for _, c := range caps.GetCapabilities() {
		info.Capabilities[c.GetRpc().GetType()] = true
	}
	return info, nil
}
