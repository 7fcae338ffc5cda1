// Package identity implements the CSI Identity service: the driver's name
// and version, the plugin capabilities, and readiness (Probe).
package identity

import (
	"context"
	"sync/atomic"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Server is the CSI Identity service. It is safe for concurrent use.
type Server struct {
	csi.UnimplementedIdentityServer

	name     string
	version  string
	ready    func() error
	stopping atomic.Bool
}

var _ csi.IdentityServer = (*Server)(nil)

// New returns the Identity service of the driver called name at version.
// ready returns nil when the driver can serve (its catalog is recovered and
// its data directory is writable) or an error that says why not; nil means
// always ready.
func New(name, version string, ready func() error) *Server {
	return &Server{name: name, version: version, ready: ready}
}

// SetStopping makes Probe report not ready from now on, for a graceful
// shutdown.
func (s *Server) SetStopping() {
	s.stopping.Store(true)
}

// GetPluginInfo returns the driver name and version. No lock: it reads
// fields that never change.
func (s *Server) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	if s.name == "" {
		return nil, status.Error(codes.Unavailable, "driver name is not configured")
	}
	if s.version == "" {
		return nil, status.Error(codes.Unavailable, "driver version is not configured")
	}
	return &csi.GetPluginInfoResponse{Name: s.name, VendorVersion: s.version}, nil
}

// GetPluginCapabilities reports the Controller service, topology
// constraints (a volume lives on the node that made it) and
// online expansion. No lock: the answer is constant.
func (s *Server) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{
		Capabilities: []*csi.PluginCapability{
			serviceCapability(csi.PluginCapability_Service_CONTROLLER_SERVICE),
			serviceCapability(csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS),
			// The volume that grows is the one a pod uses: expansion
			// raises a qgroup limit or a reservation, or grows a block
			// file and its loop device, none of which needs an unmount.
			{Type: &csi.PluginCapability_VolumeExpansion_{
				VolumeExpansion: &csi.PluginCapability_VolumeExpansion{Type: csi.PluginCapability_VolumeExpansion_ONLINE},
			}},
		},
	}, nil
}

func serviceCapability(t csi.PluginCapability_Service_Type) *csi.PluginCapability {
	return &csi.PluginCapability{
		Type: &csi.PluginCapability_Service_{
			Service: &csi.PluginCapability_Service{Type: t},
		},
	}
}
