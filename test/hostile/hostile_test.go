// Package hostile throws malformed and malicious requests at a real dirvol
// driver over gRPC and checks, for each, the exact code, a message that says
// what was wrong, and that nothing on disk changed.
package hostile

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

var ctx = context.Background()

// long is a 2 KB string, far past every name and ID limit.
var long = strings.Repeat("a", 2048)

func TestCreateVolumeNames(t *testing.T) {
	e := start(t)
	for _, tc := range []struct{ name, vol string }{
		{"parent traversal", "../../etc"},
		{"sibling traversal", "../outside"},
		{"slash", "a/b"},
		{"absolute", "/abs"},
		{"nul", "a\x00b"},
		{"2KB", long},
		{"empty", ""},
		{"dot", "."},
		{"dotdot", ".."},
		{"leading space", " leading-space"},
		{"non-ASCII", "名前"},
		{"trailing newline", "x\n"},
		{"leading dash", "-x"},
		{"129 characters", strings.Repeat("b", 129)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snap(t)
			_, err := e.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: tc.vol, VolumeCapabilities: rwCaps()})
			words := []string{"name"}
			if tc.vol != "" {
				words = append(words, echoed(tc.vol))
			}
			wantStatus(t, err, codes.InvalidArgument, words...)
			e.unchanged(t, before)
		})
	}
}

// TestVolumeIDs sends IDs that must never reach a path to every RPC that
// takes one, with a real volume in place that must survive all of them.
func TestVolumeIDs(t *testing.T) {
	e := start(t)
	real, dir := e.create(t, "victim", nil)
	writeFile(t, dir+"/data.txt", "victim data")
	changed := []byte(real)
	if changed[len(changed)-1] = '0'; real[len(real)-1] == '0' {
		changed[len(changed)-1] = '1'
	}
	ids := []struct {
		name, id  string
		wellShape bool // matches vol-<32 hex>, so only a lookup can refuse it
	}{
		{"parent traversal", "../../etc", false},
		{"prefix traversal", "vol-../../x", false},
		{"slash", "a/b", false},
		{"nul", "\x00", false},
		{"2KB", long, false},
		{"unknown well-formed", "vol-0123456789abcdef0123456789abcdef", true},
		{"one character changed", string(changed), true},
		{"upper case", strings.ToUpper(real), false},
		{"upper-case hex", "vol-" + strings.ToUpper(real[4:]), false},
		{"trailing slash", real + "/", false},
		{"trailing newline", real + "\n", false},
		{"dot segments", real + "/../" + real, false},
		{"empty", "", false},
	}
	target := e.root + "/targets/none"
	rpcs := []struct {
		rpc  string
		call func(id string) error
	}{
		{"DeleteVolume", func(id string) error {
			_, err := e.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			return err
		}},
		{"ValidateVolumeCapabilities", func(id string) error {
			_, err := e.ctrl.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: id, VolumeCapabilities: rwCaps()})
			return err
		}},
		{"ControllerGetVolume", func(id string) error {
			_, err := e.ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
			return err
		}},
		{"ControllerModifyVolume", func(id string) error {
			_, err := e.ctrl.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: id, MutableParameters: map[string]string{"onDelete": "archive"}})
			return err
		}},
		{"ControllerGetVolumeHealth", func(id string) error {
			_, err := e.ctrl.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: id})
			return err
		}},
		{"NodePublishVolume", func(id string) error {
			_, err := e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: rwCaps()[0]})
			return err
		}},
		{"NodeGetVolumeStats", func(id string) error {
			_, err := e.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: dir})
			return err
		}},
		{"NodeGetVolumeHealth", func(id string) error {
			_, err := e.node.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: id})
			return err
		}},
		{"NodeUnpublishVolume", func(id string) error {
			_, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
			return err
		}},
	}
	for _, r := range rpcs {
		for _, tc := range ids {
			t.Run(r.rpc+"/"+tc.name, func(t *testing.T) {
				before := e.snap(t)
				err := r.call(tc.id)
				switch {
				case tc.id == "":
					wantStatus(t, err, codes.InvalidArgument, "volume_id")
				case r.rpc == "DeleteVolume":
					// CSI: deleting a volume that does not exist is success.
					wantStatus(t, err, codes.OK)
				case r.rpc == "NodeUnpublishVolume" && tc.wellShape:
					// Unpublish does not look the volume up, so that a volume
					// already deleted can still be unpublished; the target
					// does not exist, so there is nothing to do.
					wantStatus(t, err, codes.OK)
				default:
					wantStatus(t, err, codes.NotFound, mentionID(tc.id)...)
				}
				e.unchanged(t, before)
			})
		}
	}
	if _, err := e.ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: real}); err != nil {
		t.Errorf("the real volume is gone after the hostile IDs: %v", err)
	}
}

// mentionID is what a NotFound message must contain: the word volume and
// the ID as echoed, at most its first 64 characters, escaped.
func mentionID(id string) []string {
	return []string{"volume", echoed(id)}
}

// TestCapabilities sends capabilities a directory volume cannot serve to
// CreateVolume, ValidateVolumeCapabilities and NodePublishVolume.
func TestCapabilities(t *testing.T) {
	e := start(t)
	id, _ := e.create(t, "caps", nil)
	swm := csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	for _, tc := range []struct {
		name string
		cap  *csi.VolumeCapability
		word string
	}{
		{"flags bind,remount", mountCap(swm, "bind,remount"), `"bind,remount"`},
		{"flag bind", mountCap(swm, "bind"), `"bind"`},
		{"flag remount", mountCap(swm, "remount"), `"remount"`},
		{"flag discard", mountCap(swm, "discard"), `"discard"`},
		{"flag x-mount.mkdir", mountCap(swm, "x-mount.mkdir"), `"x-mount.mkdir"`},
		{"flags ro,exec as one", mountCap(swm, "ro,exec"), `"ro,exec"`},
		{"empty flag", mountCap(swm, ""), `""`},
		{"fs_type", fsTypeCap("ext4"), "fs_type"},
		{"no access type", &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: swm}}, "access type"},
		{"MULTI_NODE_READER_ONLY", mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY), "MULTI_NODE_READER_ONLY"},
		{"MULTI_NODE_SINGLE_WRITER", mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER), "MULTI_NODE_SINGLE_WRITER"},
		{"MULTI_NODE_MULTI_WRITER", mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER), "MULTI_NODE_MULTI_WRITER"},
		{"UNKNOWN mode", mountCap(csi.VolumeCapability_AccessMode_UNKNOWN), "access mode"},
		{"mode 99", mountCap(99), "access mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snap(t)
			_, err := e.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "caps-new", VolumeCapabilities: []*csi.VolumeCapability{tc.cap}})
			wantStatus(t, err, codes.InvalidArgument, tc.word)
			resp, err := e.ctrl.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: id, VolumeCapabilities: []*csi.VolumeCapability{tc.cap}})
			if err != nil || resp.GetConfirmed() != nil || !strings.Contains(resp.GetMessage(), tc.word) {
				t.Errorf("ValidateVolumeCapabilities = %v, %v; want not confirmed, with a message naming %s", resp, err, tc.word)
			}
			_, err = e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: e.root + "/targets/caps", VolumeCapability: tc.cap})
			wantStatus(t, err, codes.InvalidArgument, tc.word)
			e.unchanged(t, before)
		})
	}
}

// TestTargetPathsRefused covers target paths refused before any disk work;
// paths that reach the mount table are in symlink_test.go.
func TestTargetPathsRefused(t *testing.T) {
	e := start(t)
	id, _ := e.create(t, "targets", nil)
	for _, tc := range []struct{ name, path string }{
		{"empty", ""},
		{"relative", "a/b"},
		{"relative with dotdot", "a/../../outside"},
		{"absolute with dotdot", e.root + "/targets/x/../../outside"},
		{"trailing dotdot", e.root + "/targets/.."},
		{"dot", "."},
		{"nul", e.root + "/targets/a\x00b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snap(t)
			_, err := e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: tc.path, VolumeCapability: rwCaps()[0]})
			wantStatus(t, err, codes.InvalidArgument, "target_path")
			_, err = e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: tc.path})
			wantStatus(t, err, codes.InvalidArgument, "target_path")
			e.unchanged(t, before)
		})
	}
}

func TestStorageClassParameters(t *testing.T) {
	e := start(t)
	for _, tc := range []struct {
		name   string
		params map[string]string
		word   string
	}{
		{"unknown size", map[string]string{"size": "1Gi"}, `"size"`},
		{"unknown fstype", map[string]string{"csi.storage.k8s.io/fstype": "ext4"}, `"csi.storage.k8s.io/fstype"`},
		{"Pool wrong case", map[string]string{"Pool": "extra"}, `"Pool"`},
		{"pathTemplate", map[string]string{"pathTemplate": "../{{.PVCName}}"}, `"pathTemplate"`},
		{"onDelete shred", map[string]string{"onDelete": "shred"}, `"onDelete"`},
		{"onDelete empty", map[string]string{"onDelete": ""}, `"onDelete"`},
		{"mode 8888", map[string]string{"mode": "8888"}, `"mode"`},
		{"mode rwx", map[string]string{"mode": "rwx"}, `"mode"`},
		{"mode 17777", map[string]string{"mode": "17777"}, `"mode"`},
		{"mode 001777", map[string]string{"mode": "001777"}, `"mode"`},
		{"mode 0o755", map[string]string{"mode": "0o755"}, `"mode"`},
		{"mode 75", map[string]string{"mode": "75"}, `"mode"`},
		{"uid -1", map[string]string{"uid": "-1"}, `"uid"`},
		{"uid abc", map[string]string{"uid": "abc"}, `"uid"`},
		{"uid 99999999999", map[string]string{"uid": "99999999999"}, `"uid"`},
		{"gid 2^31", map[string]string{"gid": "2147483648"}, `"gid"`},
		{"pool traversal", map[string]string{"pool": "../x"}, `pool "../x"`},
		{"pool unknown", map[string]string{"pool": "nope"}, `pool "nope"`},
		{"pool empty", map[string]string{"pool": ""}, `"pool"`},
		{"pvc namespace traversal", map[string]string{"csi.storage.k8s.io/pvc/namespace": "../x"}, `"csi.storage.k8s.io/pvc/namespace"`},
		{"pvc name slash", map[string]string{"csi.storage.k8s.io/pvc/name": "a/b"}, `"csi.storage.k8s.io/pvc/name"`},
		{"pv name traversal", map[string]string{"csi.storage.k8s.io/pv/name": "../../x"}, `"csi.storage.k8s.io/pv/name"`},
		{"pvc name 2KB", map[string]string{"csi.storage.k8s.io/pvc/name": long}, `"csi.storage.k8s.io/pvc/name"="` + echoed(long) + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snap(t)
			_, err := e.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "params", VolumeCapabilities: rwCaps(), Parameters: tc.params})
			wantStatus(t, err, codes.InvalidArgument, tc.word)
			// GetCapacity answers (0, or the pool's figure) so that the
			// refusal reaches users through CreateVolume's event.
			if _, err := e.ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{Parameters: tc.params}); err != nil {
				t.Errorf("GetCapacity: %v, want an answer", err)
			}
			e.unchanged(t, before)
		})
	}
}

func TestCapacityRange(t *testing.T) {
	e := start(t)
	for _, tc := range []struct {
		name          string
		required, lim int64
		code          codes.Code
		words         []string
	}{
		{"negative required", -1, 0, codes.InvalidArgument, []string{"required_bytes", "-1"}},
		{"negative limit", 0, -1, codes.InvalidArgument, []string{"limit_bytes", "-1"}},
		{"min int64 required", math.MinInt64, 0, codes.InvalidArgument, []string{"required_bytes"}},
		{"required over limit", 2 << 20, 1 << 20, codes.InvalidArgument, []string{"required_bytes 2097152", "limit_bytes 1048576"}},
		{"required 2^62", 1 << 62, 0, codes.ResourceExhausted, []string{"4Ei requested", `pool "default"`, "can promise", "filesystem free"}},
		{"required max int64", math.MaxInt64, 0, codes.ResourceExhausted, []string{"9223372036854775807 requested", "can promise"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snap(t)
			_, err := e.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "capacity", VolumeCapabilities: rwCaps(),
				CapacityRange: &csi.CapacityRange{RequiredBytes: tc.required, LimitBytes: tc.lim}})
			wantStatus(t, err, tc.code, tc.words...)
			e.unchanged(t, before)
		})
	}
}

func TestListTokens(t *testing.T) {
	e := start(t)
	e.create(t, "listed", nil)
	for _, tc := range []struct {
		name  string
		token string
		max   int32
		code  codes.Code
		word  string
	}{
		{"traversal token", "../x", 0, codes.Aborted, "starting_token"},
		{"invalid token", "invalid-token", 0, codes.Aborted, "starting_token"},
		{"2KB token", long, 0, codes.Aborted, "starting_token"},
		{"nul token", "vol-\x00", 0, codes.Aborted, "starting_token"},
		{"negative max_entries", "", -1, codes.InvalidArgument, "max_entries -1"},
		{"min int32 max_entries", "", math.MinInt32, codes.InvalidArgument, "max_entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snap(t)
			_, err := e.ctrl.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: tc.token, MaxEntries: tc.max})
			wantStatus(t, err, tc.code, tc.word)
			_, err = e.ctrl.ControllerListVolumeHealth(ctx, &csi.ControllerListVolumeHealthRequest{StartingToken: tc.token, MaxEntries: tc.max})
			wantStatus(t, err, tc.code, tc.word)
			e.unchanged(t, before)
		})
	}
}
