package csihealth

import (
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/volume"
)

func TestFromIssues(t *testing.T) {
	tests := []struct {
		name   string
		issues []volume.HealthIssue
		want   []csi.VolumeHealthErrorType
	}{
		{"healthy", nil, nil},
		{"data loss", []volume.HealthIssue{{Kind: volume.DataLoss, Reason: "DirectoryMissing", Message: "m"}},
			[]csi.VolumeHealthErrorType{csi.VolumeHealthErrorType_DATA_LOSS}},
		{"inaccessible", []volume.HealthIssue{{Kind: volume.Inaccessible, Reason: "PoolNotConfigured", Message: "m"}},
			[]csi.VolumeHealthErrorType{csi.VolumeHealthErrorType_INACCESSIBLE}},
		{"degraded", []volume.HealthIssue{{Kind: volume.Degraded, Reason: "SizeNotEnforced", Message: "m"}},
			[]csi.VolumeHealthErrorType{csi.VolumeHealthErrorType_DEGRADED}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := FromIssues("vol-1", tc.issues)
			if h.GetVolumeId() != "vol-1" || len(h.GetHealthStatuses()) != len(tc.want) {
				t.Fatalf("FromIssues = %v", h)
			}
			for i, s := range h.GetHealthStatuses() {
				if s.GetStatus() != tc.want[i] || s.GetReason() != tc.issues[i].Reason || s.GetMessage() != tc.issues[i].Message {
					t.Errorf("entry %d = %v, want %v from %+v", i, s, tc.want[i], tc.issues[i])
				}
			}
		})
	}
}
