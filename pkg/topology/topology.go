// Package topology names where a dirvol volume can be used: only on the node
// that holds its directory.
package topology

import "github.com/container-storage-interface/spec/lib/go/csi"

// NodeKey is the topology key every dirvol volume and node carries.
const NodeKey = "topology.dirvol.csi.dev/node"

// ForNode returns the accessible topology of volumes made on nodeID.
func ForNode(nodeID string) *csi.Topology {
	return &csi.Topology{Segments: map[string]string{NodeKey: nodeID}}
}

// Allows reports whether an accessibility requirement admits nodeID. A
// requirement with requisite topologies admits the node only if one of them
// matches it exactly; with only preferred topologies, one of those must;
// with neither, any node is admitted. A topology that names a key this
// driver does not publish cannot match: no dirvol node carries that key.
func Allows(req *csi.TopologyRequirement, nodeID string) bool {
	candidates := req.GetRequisite()
	if len(candidates) == 0 {
		candidates = req.GetPreferred()
	}
	if len(candidates) == 0 {
		return true
	}
	for _, t := range candidates {
		segs := t.GetSegments()
		if len(segs) == 1 && segs[NodeKey] == nodeID {
			return true
		}
	}
	return false
}
