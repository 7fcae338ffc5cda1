// Package csihealth turns the volume core's health issues into CSI
// VolumeHealth, so the controller and the node report them the same way.
package csihealth

import (
	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/volume"
)

// FromIssues returns the CSI health of volume id; no issues is healthy.
func FromIssues(id string, issues []volume.HealthIssue) *csi.VolumeHealth {
	h := &csi.VolumeHealth{VolumeId: id}
	for _, issue := range issues {
		kind := csi.VolumeHealthErrorType_INACCESSIBLE
		switch issue.Kind {
		case volume.DataLoss:
			kind = csi.VolumeHealthErrorType_DATA_LOSS
		case volume.Degraded:
			kind = csi.VolumeHealthErrorType_DEGRADED
		}
		h.HealthStatuses = append(h.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{
			Status: kind, Reason: issue.Reason, Message: issue.Message,
		})
	}
	return h
}
