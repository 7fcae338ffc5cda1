package node

import (
	"path/filepath"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/capability"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Each validate<RPC> checks what can be checked without touching the disk:
// every InvalidArgument first, then the shape of the volume ID, which is
// NotFound because an ID this driver never issues names no volume here.

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

func validateNodePublishVolume(req *csi.NodePublishVolumeRequest) error {
	if err := validatePublishShape(req); err != nil {
		return err
	}
	return checkID(req.GetVolumeId())
}

// validatePublishShape is validateNodePublishVolume but for the shape of
// the volume ID, which for an inline volume is the kubelet's.
func validatePublishShape(req *csi.NodePublishVolumeRequest) error {
	if req.GetVolumeId() == "" {
		return invalid("volume_id is required")
	}
	if err := checkPath("target_path", req.GetTargetPath()); err != nil {
		return err
	}
	c := req.GetVolumeCapability()
	if c == nil {
		return invalid("volume_capability is required")
	}
	// The same rules as the controller's, so that a volume it created is
	// never refused here.
	if err := capability.Check(c); err != nil {
		return invalid("volume_capability: %v", err)
	}
	if readOnly(req) && slices.Contains(c.GetMount().GetMountFlags(), "rw") {
		return invalid("volume_capability.mount.mount_flags has \"rw\" but the publish is read-only (readonly=%t, access mode %s); drop the flag",
			req.GetReadonly(), c.GetAccessMode().GetMode())
	}
	return nil
}

func validateNodeUnpublishVolume(req *csi.NodeUnpublishVolumeRequest) error {
	if req.GetVolumeId() == "" {
		return invalid("volume_id is required")
	}
	if err := checkPath("target_path", req.GetTargetPath()); err != nil {
		return err
	}
	if ephemeralHandle.MatchString(req.GetVolumeId()) {
		// An inline volume's: unpublished like an unknown volume once
		// its record is gone, so that the kubelet's retries succeed.
		return nil
	}
	return checkID(req.GetVolumeId())
}

// validateNodeGetVolumeStats does not require volume_path to be absolute: a
// path where the volume is not published is NotFound, whatever its form.
func validateNodeGetVolumeStats(req *csi.NodeGetVolumeStatsRequest) error {
	if req.GetVolumeId() == "" {
		return invalid("volume_id is required")
	}
	if req.GetVolumePath() == "" {
		return invalid("volume_path is required")
	}
	if ephemeralHandle.MatchString(req.GetVolumeId()) {
		return nil // an inline volume's, looked up by name
	}
	return checkID(req.GetVolumeId())
}

// validateNodeGetVolumeHealth accepts an empty volume_publish_path (the CO
// asks about the volume alone) and ignores staging_target_path: this driver
// does not stage.
func validateNodeGetVolumeHealth(req *csi.NodeGetVolumeHealthRequest) error {
	if req.GetVolumeId() == "" {
		return invalid("volume_id is required")
	}
	if p := req.GetVolumePublishPath(); p != "" {
		if err := checkPath("volume_publish_path", p); err != nil {
			return err
		}
	}
	return checkID(req.GetVolumeId())
}

// Linux limits: a path element (NAME_MAX) and a whole path (PATH_MAX,
// with its terminating NUL).
const (
	maxNameBytes = 255
	maxPathBytes = 4095
)

// checkPath accepts a path the driver may create, mount on and remove.
func checkPath(field, p string) error {
	switch {
	case p == "":
		return invalid("%s is required", field)
	case strings.ContainsRune(p, 0):
		return invalid("%s %.200q holds a NUL byte", field, p)
	case !filepath.IsAbs(p):
		return invalid("%s %.200q is not an absolute path", field, p)
	case len(p) > maxPathBytes:
		return invalid("%s is %d bytes long; a path is at most %d bytes", field, len(p), maxPathBytes)
	}
	for _, elem := range strings.Split(p, "/") {
		switch {
		case elem == "..":
			return invalid("%s %.200q has a \"..\" element; give the path without it", field, p)
		case len(elem) > maxNameBytes:
			return invalid("%s has a %d-byte element %.40q...; a path element is at most %d bytes", field, len(elem), elem, maxNameBytes)
		}
	}
	return nil
}

// checkID answers NotFound for an ID this driver could not have issued.
func checkID(id string) error {
	if !volume.ValidID(id) {
		return status.Errorf(codes.NotFound, "volume_id %.80q is not a dirvol volume ID; this driver serves only the volumes it created", id)
	}
	return nil
}

// readOnly reports whether a publish asks for a read-only mount: by the
// readonly field, a *_READER_ONLY access mode or an "ro" mount flag.
func readOnly(req *csi.NodePublishVolumeRequest) bool {
	c := req.GetVolumeCapability()
	return req.GetReadonly() || capability.ReadOnly(c) || slices.Contains(c.GetMount().GetMountFlags(), "ro")
}

// validateNodeExpandVolume requires volume_path, without NUL bytes or ".."
// elements; like NodeGetVolumeStats it does not require it to be absolute,
// since the path is only reported, never opened. capacity_range, when
// present, must name a size; that it is present is checked once the volume
// is known (an unknown volume is NotFound however the request is shaped).
// staging_target_path is ignored: this driver does not stage.
// volume_capability is optional and checked like a publish's.
func validateNodeExpandVolume(req *csi.NodeExpandVolumeRequest) error {
	if req.GetVolumeId() == "" {
		return invalid("volume_id is required")
	}
	switch p := req.GetVolumePath(); {
	case p == "":
		return invalid("volume_path is required")
	case strings.ContainsRune(p, 0):
		return invalid("volume_path %.200q holds a NUL byte", p)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return invalid("volume_path %.200q has a \"..\" element; give the path without it", p)
	}
	if r := req.GetCapacityRange(); r != nil {
		switch required, limit := r.GetRequiredBytes(), r.GetLimitBytes(); {
		case required < 0:
			return invalid("capacity_range.required_bytes %d is negative", required)
		case limit < 0:
			return invalid("capacity_range.limit_bytes %d is negative", limit)
		case required == 0 && limit == 0:
			return invalid("capacity_range sets neither required_bytes nor limit_bytes; give the new size in required_bytes")
		case limit > 0 && required > limit:
			return invalid("capacity_range.required_bytes %d exceeds limit_bytes %d", required, limit)
		}
	}
	if c := req.GetVolumeCapability(); c != nil {
		if err := capability.Check(c); err != nil {
			return invalid("volume_capability: %v", err)
		}
	}
	return checkID(req.GetVolumeId())
}
