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
	// capability.Block checks every capability and refuses a mix of block
	// and mount access.
	if _, err := capability.Block(req.GetVolumeCapabilities()); err != nil {
		return invalid("%v", err)
	}
	if err := validateRange(req.GetCapacityRange()); err != nil {
		return err
	}
	if src := req.GetVolumeContentSource(); src != nil {
		if err := validateContentSource(src); err != nil {
			return err
		}
	}
	if _, err := parseMutableParameters(req.GetMutableParameters()); err != nil {
		return invalid("%v", err)
	}
	return nil
}

// validateContentSource checks the shape of volume_content_source; whether
// the source exists is the volume core's question.
func validateContentSource(src *csi.VolumeContentSource) error {
	switch t := src.GetType().(type) {
	case *csi.VolumeContentSource_Snapshot:
		if t.Snapshot.GetSnapshotId() == "" {
			return invalid("volume_content_source.snapshot.snapshot_id is required")
		}
	case *csi.VolumeContentSource_Volume:
		if t.Volume.GetVolumeId() == "" {
			return invalid("volume_content_source.volume.volume_id is required")
		}
	default:
		return invalid("volume_content_source names neither a snapshot nor a volume")
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
	// Parameters are not judged here: see GetCapacity.
	return nil
}

func validateCreateSnapshot(req *csi.CreateSnapshotRequest) error {
	name := req.GetName()
	switch {
	case name == "":
		return invalid("name is required")
	case !namePattern.MatchString(name):
		return invalid("name %.64q is not 1-128 characters of letters, digits, '.', '_' or '-' starting with a letter or digit", name)
	case req.GetSourceVolumeId() == "":
		return invalid("source_volume_id is required")
	}
	if err := parseSnapshotParameters(req.GetParameters()); err != nil {
		return invalid("%v", err)
	}
	return nil
}

func validateDeleteSnapshot(req *csi.DeleteSnapshotRequest) error {
	if req.GetSnapshotId() == "" {
		return invalid("snapshot_id is required")
	}
	return nil
}

func validateGetSnapshot(req *csi.GetSnapshotRequest) error {
	if req.GetSnapshotId() == "" {
		return invalid("snapshot_id is required")
	}
	return nil
}

func validateListSnapshots(req *csi.ListSnapshotsRequest) error {
	return validatePage(req.GetMaxEntries())
}

func validateControllerExpandVolume(req *csi.ControllerExpandVolumeRequest) error {
	r := req.GetCapacityRange()
	switch {
	case req.GetVolumeId() == "":
		return invalid("volume_id is required")
	case r == nil:
		return invalid("capacity_range is required")
	case r.GetRequiredBytes() == 0 && r.GetLimitBytes() == 0:
		return invalid("capacity_range sets neither required_bytes nor limit_bytes")
	}
	if err := validateRange(r); err != nil {
		return err
	}
	if c := req.GetVolumeCapability(); c != nil {
		if err := capability.Check(c); err != nil {
			return invalid("volume_capability: %v", err)
		}
	}
	return nil
}

func validateControllerModifyVolume(req *csi.ControllerModifyVolumeRequest) error {
	if req.GetVolumeId() == "" {
		return invalid("volume_id is required")
	}
	if _, err := parseMutableParameters(req.GetMutableParameters()); err != nil {
		return invalid("%v", err)
	}
	return nil
}
