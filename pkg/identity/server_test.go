package identity

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestGetPluginInfo(t *testing.T) {
	tests := []struct {
		name     string
		driver   string
		version  string
		wantCode codes.Code
		want     *csi.GetPluginInfoResponse
	}{
		{
			name:    "name and version",
			driver:  "dirvol.csi.example.com",
			version: "v0.1.0",
			want:    &csi.GetPluginInfoResponse{Name: "dirvol.csi.example.com", VendorVersion: "v0.1.0"},
		},
		{name: "no name", version: "v0.1.0", wantCode: codes.Unavailable},
		{name: "no version", driver: "dirvol.csi.example.com", wantCode: codes.Unavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(tc.driver, tc.version, nil)
			got, err := s.GetPluginInfo(context.Background(), &csi.GetPluginInfoRequest{})
			if code := status.Code(err); code != tc.wantCode {
				t.Fatalf("GetPluginInfo: code %s, want %s (err %v)", code, tc.wantCode, err)
			}
			if tc.want != nil && !proto.Equal(got, tc.want) {
				t.Errorf("GetPluginInfo = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestGetPluginCapabilities(t *testing.T) {
	s := New("dirvol.csi.example.com", "v0.1.0", nil)
	got, err := s.GetPluginCapabilities(context.Background(), &csi.GetPluginCapabilitiesRequest{})
	if err != nil {
		t.Fatalf("GetPluginCapabilities: %v", err)
	}
	want := &csi.GetPluginCapabilitiesResponse{
		Capabilities: []*csi.PluginCapability{
			serviceCapability(csi.PluginCapability_Service_CONTROLLER_SERVICE),
			serviceCapability(csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS),
			{Type: &csi.PluginCapability_VolumeExpansion_{
				VolumeExpansion: &csi.PluginCapability_VolumeExpansion{Type: csi.PluginCapability_VolumeExpansion_ONLINE},
			}},
		},
	}
	if !proto.Equal(got, want) {
		t.Errorf("GetPluginCapabilities = %v, want %v", got, want)
	}
}
