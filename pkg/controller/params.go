package controller

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
)

// StorageClass parameters dirvol understands. All are optional.
const (
	paramPool     = "pool"
	paramOnDelete = "onDelete"
	paramMode     = "mode"
	paramUID      = "uid"
	paramGID      = "gid"

	// Passed by external-provisioner with --extra-create-metadata.
	paramPVCName      = "csi.storage.k8s.io/pvc/name"
	paramPVCNamespace = "csi.storage.k8s.io/pvc/namespace"
	paramPVName       = "csi.storage.k8s.io/pv/name"
)

// VolumeSnapshotClass parameters dirvol understands: only those passed by
// external-snapshotter with --extra-create-metadata, kept in the snapshot's
// record.
const (
	paramSnapshotName        = "csi.storage.k8s.io/volumesnapshot/name"
	paramSnapshotNamespace   = "csi.storage.k8s.io/volumesnapshot/namespace"
	paramSnapshotContentName = "csi.storage.k8s.io/volumesnapshotcontent/name"
)

var knownSnapshotParameters = []string{paramSnapshotName, paramSnapshotNamespace, paramSnapshotContentName}

// defaultMode lets any pod user write into a new volume, as hostPath-style
// provisioners do; fsGroup handling by kubelet (fsGroupPolicy File) or the
// "mode" parameter narrows it.
const defaultMode = 0o777

var errBadParameter = errors.New("invalid parameter")

var (
	// dns1123Label is a Kubernetes namespace name.
	dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	// dns1123Subdomain is a Kubernetes object name (PVC, PV).
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	// modePattern is chmod's octal mode: permission bits, optionally led by
	// the setuid (4), setgid (2) and sticky (1) digit, and a leading 0.
	modePattern = regexp.MustCompile(`^0?[0-7]{3,4}$`)
)

var knownParameters = []string{paramPool, paramOnDelete, paramMode, paramUID, paramGID,
	paramPVCName, paramPVCNamespace, paramPVName}

// parameters is a validated StorageClass parameter set.
type parameters struct {
	pool                          string
	onDelete                      volume.OnDelete
	perm                          pool.Permissions
	pvcNamespace, pvcName, pvName string
}

// parseParameters validates CreateVolume or GetCapacity parameters. Every
// error wraps errBadParameter and names the key.
func parseParameters(in map[string]string) (parameters, error) {
	p := parameters{onDelete: volume.OnDeleteDelete, perm: pool.Permissions{Mode: defaultMode, UID: -1, GID: -1}}
	for k, v := range in {
		var err error
		switch k {
		case paramPool:
			if v == "" {
				err = errors.New("must name a pool")
			}
			p.pool = v
		case paramOnDelete:
			p.onDelete = volume.OnDelete(strings.ToLower(v))
			switch p.onDelete {
			case volume.OnDeleteDelete, volume.OnDeleteRetain, volume.OnDeleteArchive:
			default:
				err = errors.New("must be delete, retain or archive")
			}
		case paramMode:
			if !modePattern.MatchString(v) {
				err = errors.New("must be an octal mode such as 0770, 2770 (setgid) or 1777 (sticky)")
				break
			}
			m, _ := strconv.ParseUint(v, 8, 32)
			p.perm.Mode = uint32(m)
		case paramUID:
			p.perm.UID, err = parseID(v)
		case paramGID:
			p.perm.GID, err = parseID(v)
		case paramPVCNamespace:
			p.pvcNamespace, err = v, checkName(v, dns1123Label, "a Kubernetes namespace name")
		case paramPVCName:
			p.pvcName, err = v, checkName(v, dns1123Subdomain, "a Kubernetes object name")
		case paramPVName:
			p.pvName, err = v, checkName(v, dns1123Subdomain, "a Kubernetes object name")
		case "pathTemplate", "pathPattern":
			// Data is never placed at a path made from a request: the
			// claim view names it instead (see pool.ViewDir).
			err = errors.New("volumes are not placed by name; remove it and find a claim's data at <pool>/by-pvc/<namespace>/<claim>/<pv-name> on the node")
		default:
			err = fmt.Errorf("unknown parameter (known: %s)", strings.Join(sortedKnown(), ", "))
		}
		if err != nil {
			return parameters{}, fmt.Errorf("parameter %.64q=%.64q: %w: %w", k, v, err, errBadParameter)
		}
	}
	return p, nil
}

// parseSnapshotParameters validates CreateSnapshot parameters. Every error
// wraps errBadParameter and names the key.
func parseSnapshotParameters(in map[string]string) error {
	for k, v := range in {
		var err error
		switch k {
		case paramSnapshotNamespace:
			err = checkName(v, dns1123Label, "a Kubernetes namespace name")
		case paramSnapshotName, paramSnapshotContentName:
			err = checkName(v, dns1123Subdomain, "a Kubernetes object name")
		default:
			known := slices.Clone(knownSnapshotParameters)
			slices.Sort(known)
			err = fmt.Errorf("unknown snapshot parameter (known: %s)", strings.Join(known, ", "))
		}
		if err != nil {
			return fmt.Errorf("parameter %.64q=%.64q: %w: %w", k, v, err, errBadParameter)
		}
	}
	return nil
}

// mutableParameters is a validated set of VolumeAttributesClass parameters
// (CSI mutable_parameters). The zero value changes nothing.
type mutableParameters struct {
	onDelete volume.OnDelete
}

// parseMutableParameters validates the mutable_parameters of CreateVolume
// or ControllerModifyVolume. Only onDelete can honestly change on an
// existing volume: it is a property of the volume's record alone. The pool
// is where the bytes are, and mode, uid and gid describe the volume's root
// directory as it was made, after which the pods using it own what is in it:
// changing them on the root alone would make the class say something the
// volume's files do not. The PVC and PV names that csi-resizer passes with
// --extra-modify-metadata are accepted and not used. Every error wraps
// errBadParameter and names the key.
func parseMutableParameters(in map[string]string) (mutableParameters, error) {
	var p mutableParameters
	for k, v := range in {
		var err error
		switch k {
		case paramOnDelete:
			p.onDelete = volume.OnDelete(strings.ToLower(v))
			switch p.onDelete {
			case volume.OnDeleteDelete, volume.OnDeleteRetain, volume.OnDeleteArchive:
			default:
				err = errors.New("must be delete, retain or archive")
			}
		case paramPool:
			err = errors.New("cannot change on an existing volume: the volume's data stays in the pool it was made in; " +
				"set pool in the StorageClass, not in a VolumeAttributesClass")
		case paramMode, paramUID, paramGID:
			err = errors.New("cannot change on an existing volume: it sets the volume's root directory when the volume is made, " +
				"and the files pods wrote since keep theirs; set it in the StorageClass, or use the pod's fsGroup")
		case paramPVCNamespace:
			err = checkName(v, dns1123Label, "a Kubernetes namespace name")
		case paramPVCName, paramPVName:
			err = checkName(v, dns1123Subdomain, "a Kubernetes object name")
		default:
			err = fmt.Errorf("unknown mutable parameter (the only one is %s)", paramOnDelete)
		}
		if err != nil {
			return mutableParameters{}, fmt.Errorf("mutable parameter %.64q=%.64q: %w: %w", k, v, err, errBadParameter)
		}
	}
	return p, nil
}

func parseID(v string) (int, error) {
	n, err := strconv.ParseUint(v, 10, 31)
	if err != nil {
		return 0, errors.New("must be a decimal user or group ID below 2^31")
	}
	return int(n), nil
}

func checkName(v string, re *regexp.Regexp, what string) error {
	if !re.MatchString(v) {
		return fmt.Errorf("must be %s", what)
	}
	return nil
}

func sortedKnown() []string {
	k := slices.Clone(knownParameters)
	slices.Sort(k)
	return k
}
