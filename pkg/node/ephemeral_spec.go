package node

import (
	"maps"
	"regexp"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/volume"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Volume attributes of an ephemeral inline volume, and what the kubelet
// adds to them.
const (
	attrSize = "size"
	attrPool = "pool"

	attrEphemeral      = volume.EphemeralParameter
	attrPodName        = "csi.storage.k8s.io/pod.name"
	attrPodNamespace   = "csi.storage.k8s.io/pod.namespace"
	attrPodUID         = "csi.storage.k8s.io/pod.uid"
	attrServiceAccount = "csi.storage.k8s.io/serviceAccount.name"
)

// ephemeralHandle is the shape of the kubelet's volume_id for an inline
// volume.
var ephemeralHandle = regexp.MustCompile(`^csi-[0-9a-f]{64}$`)

// maxEphemeralBytes bounds the size attribute well below what int64 bytes
// hold; the pool's own free space is checked by the volume core.
const maxEphemeralBytes = 1 << 50

// isEphemeral reports whether a publish is of an inline volume.
func isEphemeral(req *csi.NodePublishVolumeRequest) bool {
	return req.GetVolumeContext()[attrEphemeral] == "true"
}

// ephemeralAttributes is a validated set of volumeAttributes.
type ephemeralAttributes struct {
	pool  string
	bytes int64 // 0: the driver's default size
	// record is what the volume's record keeps: the attributes, the pod
	// and the marker.
	record map[string]string
}

// parseEphemeralAttributes validates an inline volume's volume_context:
// size and pool, and the pod information the kubelet adds. Anything else is
// refused, naming the key.
func parseEphemeralAttributes(in map[string]string) (ephemeralAttributes, error) {
	a := ephemeralAttributes{record: map[string]string{attrEphemeral: "true"}}
	for _, k := range slices.Sorted(maps.Keys(in)) {
		v := in[k]
		switch k {
		case attrSize:
			q, err := resource.ParseQuantity(v)
			if err != nil || q.Sign() <= 0 || q.Cmp(*resource.NewQuantity(maxEphemeralBytes, resource.BinarySI)) > 0 {
				return ephemeralAttributes{}, invalid("volumeAttributes %q=%.64q: must be a positive size such as 1Gi or 500Mi, at most 1Pi", k, v)
			}
			a.bytes = q.Value()
		case attrPool:
			if v == "" {
				return ephemeralAttributes{}, invalid("volumeAttributes %q: must name a pool of this node, or be left out for the default pool", k)
			}
			a.pool = v
		case attrEphemeral, attrPodName, attrPodNamespace, attrPodUID, attrServiceAccount:
		default:
			return ephemeralAttributes{}, invalid("volumeAttributes %.64q: unknown attribute of an inline volume (known: %s, %s)", k, attrPool, attrSize)
		}
		if k != attrServiceAccount {
			a.record[k] = v
		}
	}
	return a, nil
}

// ephemeralOf returns the inline volume the kubelet knows as id, if id is
// such a handle and the volume is recorded.
func (s *Server) ephemeralOf(id string) (volume.Volume, bool) {
	if !ephemeralHandle.MatchString(id) || !s.vols.Ready() {
		return volume.Volume{}, false
	}
	v, err := s.vols.EphemeralByName(id)
	return v, err == nil
}
