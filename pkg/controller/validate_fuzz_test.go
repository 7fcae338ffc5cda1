package controller

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/capability"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Every request validator is fuzzed with the wire form of requests: any
// bytes that decode as the request type reach the validator, which must not
// panic, must answer nil or InvalidArgument with a bounded, printable
// message, and must accept only requests the handlers can rely on. Seeds are
// the hostile inputs of test/hostile and the cases of the table tests.

// hostileStrings are names, IDs and tokens from test/hostile.
var hostileStrings = []string{
	"", ".", "..", "../../etc", "../outside", "a/b", "/abs", "a\x00b", "\x00", " leading-space", "名前", "x\n", "-x",
	strings.Repeat("b", 129), strings.Repeat("a", 2048), "vol-../../x", "vol-0123456789abcdef0123456789abcdef",
	"VOL-0123456789ABCDEF0123456789ABCDEF", "vol-0123456789abcdef0123456789abcdef/", "snap-0123456789abcdef0123456789abcdef",
	"pv-1", "invalid-token",
}

// maxMessage bounds what a refusal may say: validators quote input with a
// precision (%.64q), so a 2 KiB name is never echoed whole.
const maxMessage = 1024

// fuzzRequest runs the checks above for one request type. accepted checks
// what a request that passed validation must hold.
func fuzzRequest[T proto.Message](f *testing.F, newReq func() T, validate func(T) error, accepted func(*testing.T, T), seeds ...T) {
	f.Helper()
	for _, s := range seeds {
		data, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := newReq()
		if proto.Unmarshal(data, req) != nil {
			return
		}
		err := validate(req)
		if err == nil {
			accepted(t, req)
			return
		}
		st, ok := status.FromError(err)
		switch {
		case !ok || st.Code() != codes.InvalidArgument:
			t.Fatalf("refusal %v is not InvalidArgument", err)
		case st.Message() == "" || len(st.Message()) > maxMessage || !utf8.ValidString(st.Message()):
			t.Fatalf("refusal message is empty, longer than %d bytes or not UTF-8: %q", maxMessage, st.Message())
		}
	})
}

func rangeOK(t *testing.T, r *csi.CapacityRange) {
	t.Helper()
	if r.GetRequiredBytes() < 0 || r.GetLimitBytes() < 0 || (r.GetLimitBytes() > 0 && r.GetRequiredBytes() > r.GetLimitBytes()) {
		t.Fatalf("accepted capacity_range %v", r)
	}
}

func idSet(t *testing.T, what, id string) {
	t.Helper()
	if id == "" {
		t.Fatalf("accepted an empty %s", what)
	}
}

func volumeIDSeeds[T proto.Message](mk func(string) T) []T {
	out := make([]T, 0, len(hostileStrings))
	for _, s := range hostileStrings {
		out = append(out, mk(s))
	}
	return out
}

func FuzzValidateCreateVolume(f *testing.F) {
	seeds := []*csi.CreateVolumeRequest{
		createReq("pv-1", nil),
		createReq("pv-1", map[string]string{"pool": "fast", "onDelete": "archive", "mode": "0750", "uid": "1000", "gid": "1000"}),
		{Name: "pv-block", VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}}},
		{Name: "pv-1", VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)},
			CapacityRange: &csi.CapacityRange{RequiredBytes: math.MinInt64, LimitBytes: -1}},
		{Name: "pv-1", VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)},
			CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 20, LimitBytes: 1 << 20}},
		{Name: "pv-1", VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}},
		{Name: "pv-1", VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)},
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "../x"}}}},
		{Name: "pv-1", VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)},
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{}}}},
		{Name: "pv-1", VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)},
			MutableParameters: map[string]string{"iops": "100"}},
		{Name: "pv-1", VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)},
			MutableParameters: map[string]string{"onDelete": "archive"}},
	}
	for _, s := range hostileStrings {
		seeds = append(seeds, createReq(s, nil))
	}
	fuzzRequest(f, func() *csi.CreateVolumeRequest { return new(csi.CreateVolumeRequest) }, validateCreateVolume,
		func(t *testing.T, r *csi.CreateVolumeRequest) {
			if !namePattern.MatchString(r.GetName()) {
				t.Fatalf("accepted name %q", r.GetName())
			}
			if _, err := capability.Block(r.GetVolumeCapabilities()); err != nil {
				t.Fatalf("accepted capabilities %v: %v", r.GetVolumeCapabilities(), err)
			}
			rangeOK(t, r.GetCapacityRange())
			if src := r.GetVolumeContentSource(); src != nil && src.GetSnapshot().GetSnapshotId() == "" && src.GetVolume().GetVolumeId() == "" {
				t.Fatalf("accepted content source %v without an ID", src)
			}
			for k := range r.GetMutableParameters() {
				if k != paramOnDelete && k != paramPVCName && k != paramPVCNamespace && k != paramPVName {
					t.Fatalf("accepted mutable parameter %q", k)
				}
			}
		}, seeds...)
}

func FuzzValidateDeleteVolume(f *testing.F) {
	fuzzRequest(f, func() *csi.DeleteVolumeRequest { return new(csi.DeleteVolumeRequest) }, validateDeleteVolume,
		func(t *testing.T, r *csi.DeleteVolumeRequest) { idSet(t, "volume_id", r.GetVolumeId()) },
		volumeIDSeeds(func(id string) *csi.DeleteVolumeRequest { return &csi.DeleteVolumeRequest{VolumeId: id} })...)
}

func FuzzValidateValidateVolumeCapabilities(f *testing.F) {
	fuzzRequest(f, func() *csi.ValidateVolumeCapabilitiesRequest { return new(csi.ValidateVolumeCapabilitiesRequest) },
		validateValidateVolumeCapabilities,
		func(t *testing.T, r *csi.ValidateVolumeCapabilitiesRequest) {
			idSet(t, "volume_id", r.GetVolumeId())
			if len(r.GetVolumeCapabilities()) == 0 {
				t.Fatal("accepted no volume_capabilities")
			}
		},
		volumeIDSeeds(func(id string) *csi.ValidateVolumeCapabilitiesRequest {
			return &csi.ValidateVolumeCapabilitiesRequest{VolumeId: id,
				VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)},
				Parameters:         map[string]string{"pool": id}}
		})...)
}

func FuzzValidateControllerGetVolume(f *testing.F) {
	fuzzRequest(f, func() *csi.ControllerGetVolumeRequest { return new(csi.ControllerGetVolumeRequest) }, validateControllerGetVolume,
		func(t *testing.T, r *csi.ControllerGetVolumeRequest) { idSet(t, "volume_id", r.GetVolumeId()) },
		volumeIDSeeds(func(id string) *csi.ControllerGetVolumeRequest { return &csi.ControllerGetVolumeRequest{VolumeId: id} })...)
}

func FuzzValidateControllerGetVolumeHealth(f *testing.F) {
	fuzzRequest(f, func() *csi.ControllerGetVolumeHealthRequest { return new(csi.ControllerGetVolumeHealthRequest) },
		validateControllerGetVolumeHealth,
		func(t *testing.T, r *csi.ControllerGetVolumeHealthRequest) { idSet(t, "volume_id", r.GetVolumeId()) },
		volumeIDSeeds(func(id string) *csi.ControllerGetVolumeHealthRequest {
			return &csi.ControllerGetVolumeHealthRequest{VolumeId: id}
		})...)
}

func FuzzValidateGetCapacity(f *testing.F) {
	fuzzRequest(f, func() *csi.GetCapacityRequest { return new(csi.GetCapacityRequest) }, validateGetCapacity,
		func(t *testing.T, r *csi.GetCapacityRequest) {
			for i, c := range r.GetVolumeCapabilities() {
				if c == nil {
					t.Fatalf("accepted an empty volume_capabilities[%d]", i)
				}
			}
		},
		&csi.GetCapacityRequest{},
		&csi.GetCapacityRequest{VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)},
			Parameters: map[string]string{"pool": "../x", "size": "1Gi"}},
		&csi.GetCapacityRequest{VolumeCapabilities: []*csi.VolumeCapability{{}}})
}

func FuzzValidateCreateSnapshot(f *testing.F) {
	seeds := []*csi.CreateSnapshotRequest{
		snapReq("snap-1", "vol-0123456789abcdef0123456789abcdef"),
		{Name: "snap-1", SourceVolumeId: "vol-x", Parameters: map[string]string{
			paramSnapshotName: "snap", paramSnapshotNamespace: "ns", paramSnapshotContentName: "snapcontent-1"}},
		{Name: "snap-1", SourceVolumeId: "vol-x", Parameters: map[string]string{paramSnapshotNamespace: "../x", "retain": "yes"}},
	}
	for _, s := range hostileStrings {
		seeds = append(seeds, snapReq(s, s))
	}
	fuzzRequest(f, func() *csi.CreateSnapshotRequest { return new(csi.CreateSnapshotRequest) }, validateCreateSnapshot,
		func(t *testing.T, r *csi.CreateSnapshotRequest) {
			if !namePattern.MatchString(r.GetName()) {
				t.Fatalf("accepted name %q", r.GetName())
			}
			idSet(t, "source_volume_id", r.GetSourceVolumeId())
			if err := parseSnapshotParameters(r.GetParameters()); err != nil {
				t.Fatalf("accepted parameters %v: %v", r.GetParameters(), err)
			}
		}, seeds...)
}

func FuzzValidateDeleteSnapshot(f *testing.F) {
	fuzzRequest(f, func() *csi.DeleteSnapshotRequest { return new(csi.DeleteSnapshotRequest) }, validateDeleteSnapshot,
		func(t *testing.T, r *csi.DeleteSnapshotRequest) { idSet(t, "snapshot_id", r.GetSnapshotId()) },
		volumeIDSeeds(func(id string) *csi.DeleteSnapshotRequest { return &csi.DeleteSnapshotRequest{SnapshotId: id} })...)
}

func FuzzValidateGetSnapshot(f *testing.F) {
	fuzzRequest(f, func() *csi.GetSnapshotRequest { return new(csi.GetSnapshotRequest) }, validateGetSnapshot,
		func(t *testing.T, r *csi.GetSnapshotRequest) { idSet(t, "snapshot_id", r.GetSnapshotId()) },
		volumeIDSeeds(func(id string) *csi.GetSnapshotRequest { return &csi.GetSnapshotRequest{SnapshotId: id} })...)
}

func FuzzValidateListSnapshots(f *testing.F) {
	fuzzRequest(f, func() *csi.ListSnapshotsRequest { return new(csi.ListSnapshotsRequest) }, validateListSnapshots,
		func(t *testing.T, r *csi.ListSnapshotsRequest) {
			if r.GetMaxEntries() < 0 {
				t.Fatalf("accepted max_entries %d", r.GetMaxEntries())
			}
		},
		&csi.ListSnapshotsRequest{MaxEntries: -1, StartingToken: "../x"},
		&csi.ListSnapshotsRequest{MaxEntries: math.MinInt32, SourceVolumeId: "a/b", SnapshotId: "\x00"},
		&csi.ListSnapshotsRequest{MaxEntries: 2, StartingToken: "snap-0123456789abcdef0123456789abcdef"})
}

func FuzzValidateControllerExpandVolume(f *testing.F) {
	seeds := []*csi.ControllerExpandVolumeRequest{
		{VolumeId: "vol-0123456789abcdef0123456789abcdef", CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 20}},
		{VolumeId: "vol-x", CapacityRange: &csi.CapacityRange{}},
		{VolumeId: "vol-x", CapacityRange: &csi.CapacityRange{RequiredBytes: math.MinInt64, LimitBytes: math.MaxInt64}},
		{VolumeId: "vol-x", CapacityRange: &csi.CapacityRange{RequiredBytes: 1}, VolumeCapability: &csi.VolumeCapability{}},
	}
	for _, s := range hostileStrings {
		seeds = append(seeds, &csi.ControllerExpandVolumeRequest{VolumeId: s, CapacityRange: &csi.CapacityRange{LimitBytes: 1 << 30}})
	}
	fuzzRequest(f, func() *csi.ControllerExpandVolumeRequest { return new(csi.ControllerExpandVolumeRequest) },
		validateControllerExpandVolume,
		func(t *testing.T, r *csi.ControllerExpandVolumeRequest) {
			idSet(t, "volume_id", r.GetVolumeId())
			if r.GetCapacityRange() == nil || (r.GetCapacityRange().GetRequiredBytes() == 0 && r.GetCapacityRange().GetLimitBytes() == 0) {
				t.Fatalf("accepted capacity_range %v", r.GetCapacityRange())
			}
			rangeOK(t, r.GetCapacityRange())
			if c := r.GetVolumeCapability(); c != nil {
				if err := capability.Check(c); err != nil {
					t.Fatalf("accepted volume_capability %v: %v", c, err)
				}
			}
		}, seeds...)
}

// ListVolumes (and ControllerListVolumeHealth) validate max_entries, and
// page validates starting_token: a token must be an ID of the listed kind,
// and a page never holds more than max_entries items or items at or before
// the token.
func FuzzValidateListVolumes(f *testing.F) {
	items := []string{"vol-00000000000000000000000000000001", "vol-00000000000000000000000000000002", "vol-00000000000000000000000000000003"}
	for _, s := range hostileStrings {
		f.Add(s, int32(1))
	}
	f.Add(items[1], int32(0))
	f.Add("", int32(-1))
	f.Add("", int32(math.MinInt32))
	f.Fuzz(func(t *testing.T, token string, maxEntries int32) {
		if err := validatePage(maxEntries); err != nil {
			if status.Code(err) != codes.InvalidArgument || maxEntries >= 0 {
				t.Fatalf("validatePage(%d) = %v", maxEntries, err)
			}
			return
		}
		got, next, err := page(items, func(s string) string { return s }, volume.ValidID, token, maxEntries)
		if err != nil {
			if status.Code(err) != codes.Aborted || token == "" || volume.ValidID(token) || len(status.Convert(err).Message()) > maxMessage {
				t.Fatalf("page(%q, %d) = %v", token, maxEntries, err)
			}
			return
		}
		if maxEntries > 0 && len(got) > int(maxEntries) {
			t.Fatalf("page of %d items for max_entries %d", len(got), maxEntries)
		}
		for _, it := range got {
			if it <= token {
				t.Fatalf("page after %q holds %q", token, it)
			}
		}
		if next != "" && next != got[len(got)-1] {
			t.Fatalf("next token %q is not the last item of the page %v", next, got)
		}
	})
}

// FuzzParseParameters feeds StorageClass parameters of up to two keys: a
// refusal names its key and wraps errBadParameter; an accepted set holds
// only known keys and values the volume core can use as they are.
func FuzzParseParameters(f *testing.F) {
	f.Add("pool", "fast", "onDelete", "Archive")
	f.Add("mode", "0750", "uid", "1000")
	f.Add("mode", "2770", "gid", "1000")
	f.Add("mode", "17777", "uid", "0")
	f.Add("gid", "2147483648", "mode", "01777")
	f.Add(paramPVCNamespace, "../x", paramPVCName, "a/b")
	f.Add(paramPVName, strings.Repeat("a", 2048), "size", "1Gi")
	f.Add("pool", "", "Pool", "extra")
	f.Add("uid", "-1", "mode", "rwx")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		in := map[string]string{k1: v1, k2: v2}
		p, err := parseParameters(in)
		if err != nil {
			if !errors.Is(err, errBadParameter) || len(err.Error()) > maxMessage {
				t.Fatalf("parseParameters(%q) = %v", in, err)
			}
			return
		}
		for k := range in {
			if !slices.Contains(knownParameters, k) {
				t.Fatalf("accepted unknown parameter %q", k)
			}
		}
		switch {
		case p.perm.Mode > 0o7777:
			t.Fatalf("accepted mode %o", p.perm.Mode)
		case p.perm.UID < -1 || p.perm.GID < -1:
			t.Fatalf("accepted uid %d gid %d", p.perm.UID, p.perm.GID)
		case p.pvcNamespace != "" && !dns1123Label.MatchString(p.pvcNamespace),
			p.pvcName != "" && !dns1123Subdomain.MatchString(p.pvcName),
			p.pvName != "" && !dns1123Subdomain.MatchString(p.pvName):
			t.Fatalf("accepted PVC metadata %+v", p)
		}
		if _, ok := in[paramPool]; ok && p.pool == "" {
			t.Fatal("accepted an empty pool")
		}
	})
}

// FuzzParseSnapshotParameters is FuzzParseParameters for
// VolumeSnapshotClass parameters.
func FuzzParseSnapshotParameters(f *testing.F) {
	f.Add(paramSnapshotName, "snap", paramSnapshotNamespace, "ns")
	f.Add(paramSnapshotContentName, "../x", "retain", "yes")
	f.Add(paramSnapshotNamespace, strings.Repeat("a", 64), paramSnapshotName, "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		in := map[string]string{k1: v1, k2: v2}
		err := parseSnapshotParameters(in)
		if err != nil {
			if !errors.Is(err, errBadParameter) || len(err.Error()) > maxMessage {
				t.Fatalf("parseSnapshotParameters(%q) = %v", in, err)
			}
			return
		}
		for k, v := range in {
			if !slices.Contains(knownSnapshotParameters, k) {
				t.Fatalf("accepted unknown parameter %q", k)
			}
			re := dns1123Subdomain
			if k == paramSnapshotNamespace {
				re = dns1123Label
			}
			if !re.MatchString(v) {
				t.Fatalf("accepted %s=%q", k, v)
			}
		}
	})
}

func FuzzValidateControllerModifyVolume(f *testing.F) {
	seeds := volumeIDSeeds(func(id string) *csi.ControllerModifyVolumeRequest {
		return modifyReq(id, map[string]string{"onDelete": "archive"})
	})
	seeds = append(seeds,
		modifyReq(unknownVolID, map[string]string{"pool": "fast", "mode": "0700"}),
		modifyReq(unknownVolID, map[string]string{"onDelete": "Retain", paramPVName: "pv-1"}),
		modifyReq(unknownVolID, map[string]string{"onDelete": "archive\x00"}))
	fuzzRequest(f, func() *csi.ControllerModifyVolumeRequest { return new(csi.ControllerModifyVolumeRequest) },
		validateControllerModifyVolume,
		func(t *testing.T, r *csi.ControllerModifyVolumeRequest) {
			idSet(t, "volume_id", r.GetVolumeId())
			for k, v := range r.GetMutableParameters() {
				switch k {
				case paramOnDelete:
					if p := strings.ToLower(v); p != "delete" && p != "retain" && p != "archive" {
						t.Fatalf("accepted onDelete %q", v)
					}
				case paramPVCName, paramPVCNamespace, paramPVName:
				default:
					t.Fatalf("accepted mutable parameter %q", k)
				}
			}
		}, seeds...)
}
