package topology

import (
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func TestAllows(t *testing.T) {
	here := map[string]string{NodeKey: "n1"}
	there := map[string]string{NodeKey: "n2"}
	zone := map[string]string{"topology.kubernetes.io/zone": "a"}
	tests := []struct {
		name string
		req  *csi.TopologyRequirement
		want bool
	}{
		{"no requirement", nil, true},
		{"empty requirement", &csi.TopologyRequirement{}, true},
		{"requisite has this node", &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: there}, {Segments: here}}}, true},
		{"requisite excludes this node", &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: there}}}, false},
		{"requisite wins over preferred", &csi.TopologyRequirement{
			Requisite: []*csi.Topology{{Segments: there}}, Preferred: []*csi.Topology{{Segments: here}}}, false},
		{"preferred only, has this node", &csi.TopologyRequirement{Preferred: []*csi.Topology{{Segments: here}}}, true},
		{"preferred only, excludes this node", &csi.TopologyRequirement{Preferred: []*csi.Topology{{Segments: there}}}, false},
		{"foreign key only", &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: zone}}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Allows(tc.req, "n1"); got != tc.want {
				t.Errorf("Allows = %v, want %v", got, tc.want)
			}
		})
	}
}
