package controller

import (
	"regexp"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/capability"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// namePattern is what CreateVolume accepts as a volume name: Kubernetes PV
// names and the like. A name never becomes a path, but refusing separators,
// NUL and overlong names up front keeps it printable everywhere it appears
// (logs, archive names, records).
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

func validateCreateVolume(req *csi.CreateVolumeRequest) error {
	name := req.GetName()
	switch {
	case name == "":
		return invalid("name is required")
	case !namePattern.MatchString(name):
		return invalid("name %.64q is not 1-128 characters of letters, digits, '.', '_' or '-' starting with a letter or digit", name)
	}
	if err := capability.CheckAll(req.GetVolumeCapabilities()); err != nil {
		return invalid("%v", err)
	}
	if err := validateRange(req.GetCapacityRange()); err != nil {
		return err
	}
	if req.GetVolumeContentSource() != nil {
		return invalid("volume_content_source: creating a volume from a snapshot or another volume is not supported yet")
	}
	if len(req.GetMutableParameters()) > 0 {
		return invalid("mutable_parameters: this driver has no mutable parameters (no MODIFY_VOLUME capability)")
	}
	return nil
}

func validateRange(r *csi.CapacityRange) error {
	req, lim := r.GetRequiredBytes(), r.GetLimitBytes()
	switch {
	case req < 0:
		return invalid("capacity_range.required_bytes %d is negative", req)
	case lim < 0:
		return invalid("capacity_range.limit_bytes %d is negative", lim)
	case lim > 0 && req > lim:
		return invalid("capacity_range.required_bytes %d exceeds limit_bytes %d", req, lim)
	}
	return nil
}

func validateDeleteVolume(req *csi.DeleteVolumeRequest) error {
	if req.GetVolumeId() == "" {
		return invalid("volume_id is required")
	}
	return nil
}

func validateValidateVolumeCapabilities(req *csi.ValidateVolumeCapabilitiesRequest) error {
	if req.GetVolumeId() == "" {
		return invalid("volume_id is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return invalid("volume_capabilities is required")
	}
	return nil
}

func validateControllerGetVolume(req *csi.ControllerGetVolumeRequest) error {
	if req.GetVolumeId() == "" {
		return invalid("volume_id is required")
	}
	return nil
}

func validateControllerGetVolumeHealth(req *csi.ControllerGetVolumeHealthRequest) error {
	if req.GetVolumeId() == "" {
		return invalid("volume_id is required")
	}
	return nil
}

func validatePage(maxEntries int32) error {
	if maxEntries < 0 {
		return invalid("max_entries %d is negative", maxEntries)
	}
	return nil
}

func validateGetCapacity(req *csi.GetCapacityRequest) error {
	for i, c := range req.GetVolumeCapabilities() {
		if c == nil {
			return invalid("volume_capabilities[%d] is empty", i)
		}
	}
	if _, err := parseParameters(req.GetParameters()); err != nil {
		return invalid("%v", err)
	}
	return nil
}
