// Package controller is dirvol's CSI Controller service: it validates
// requests, chooses gRPC codes and takes per-key locks, and leaves every
// rule about bytes on disk to pkg/volume.
package controller

import (
	"context"
	"errors"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/keylock"
	"github.com/dirvol/dirvol/pkg/volume"
)

// Config holds the controller's settings.
type Config struct {
	// NodeID is this node's ID; every volume made here is accessible only
	// from it.
	NodeID string
}

// Validate checks the settings.
func (c Config) Validate() error {
	if c.NodeID == "" {
		return errors.New("controller: node ID is required")
	}
	return nil
}

// Server implements csi.ControllerServer over a volume.Manager. The lock
// each RPC takes is listed in locks.go.
type Server struct {
	csi.UnimplementedControllerServer

	cfg   Config
	vols  *volume.Manager
	locks keylock.Locks[lockKey]
}

var _ csi.ControllerServer = (*Server)(nil)

// New returns a controller serving the volumes of vols.
func New(cfg Config, vols *volume.Manager) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if vols == nil {
		return nil, errors.New("controller: volume manager is required")
	}
	return &Server{cfg: cfg, vols: vols}, nil
}

var capabilities = []csi.ControllerServiceCapability_RPC_Type{
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
	csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
	csi.ControllerServiceCapability_RPC_GET_CAPACITY,
	csi.ControllerServiceCapability_RPC_GET_VOLUME,
	csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH,
	csi.ControllerServiceCapability_RPC_LIST_VOLUME_HEALTH,
	csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
	csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	csi.ControllerServiceCapability_RPC_GET_SNAPSHOT,
	csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
	csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
	csi.ControllerServiceCapability_RPC_MODIFY_VOLUME,
}

// ControllerGetCapabilities lists what the controller does. No lock.
func (s *Server) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	out := make([]*csi.ControllerServiceCapability, 0, len(capabilities))
	for _, c := range capabilities {
		out = append(out, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: c}},
		})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: out}, nil
}
