package node

import (
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	goodID = "vol-0123456789abcdef0123456789abcdef"
	goodTP = "/var/lib/kubelet/pods/p/volumes/kubernetes.io~csi/pv/mount"
)

// checkCode fails unless err has code want and, when want is not OK, a
// message containing msg.
func checkCode(t *testing.T, err error, want codes.Code, msg string) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code = %s (%v), want %s", got, err, want)
	}
	if msg != "" && !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("message %q does not contain %q", status.Convert(err).Message(), msg)
	}
}

func TestValidateNodePublishVolume(t *testing.T) {
	rw := csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	tests := []struct {
		name string
		req  *csi.NodePublishVolumeRequest
		want codes.Code
		msg  string
	}{
		{name: "ok", req: publishReq(goodID, goodTP, mountCap(rw))},
		{name: "ok with bind flags", req: publishReq(goodID, goodTP, mountCap(rw, "nosuid", "nodev", "noexec", "noatime", "nosymfollow"))},
		{name: "ok read-only flag", req: publishReq(goodID, goodTP, mountCap(rw, "ro"))},
		{name: "ok single writer", req: publishReq(goodID, goodTP, mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER))},
		{name: "ok multi writer", req: publishReq(goodID, goodTP, mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER))},
		{name: "ok reader only", req: publishReq(goodID, goodTP, mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY))},
		{name: "nil request", req: nil, want: codes.InvalidArgument, msg: "volume_id is required"},
		{name: "no volume ID", req: publishReq("", goodTP, mountCap(rw)), want: codes.InvalidArgument, msg: "volume_id is required"},
		{name: "no target", req: publishReq(goodID, "", mountCap(rw)), want: codes.InvalidArgument, msg: "target_path is required"},
		{name: "relative target", req: publishReq(goodID, "pods/x/mount", mountCap(rw)), want: codes.InvalidArgument, msg: "not an absolute path"},
		{name: "NUL in target", req: publishReq(goodID, "/pods/x\x00y", mountCap(rw)), want: codes.InvalidArgument, msg: "NUL"},
		{name: "no capability", req: publishReq(goodID, goodTP, nil), want: codes.InvalidArgument, msg: "volume_capability is required"},
		{name: "ok block", req: publishReq(goodID, goodTP, blockCap(rw))},
		{name: "ok block reader only", req: publishReq(goodID, goodTP, blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY))},
		{name: "block multi-node", req: publishReq(goodID, goodTP, blockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)), want: codes.InvalidArgument, msg: "one node"},
		{name: "block with .. in target", req: publishReq(goodID, "/var/lib/kubelet/../x", blockCap(rw)), want: codes.InvalidArgument, msg: `".."`},
		{name: "300-byte target element", req: publishReq(goodID, "/pods/"+strings.Repeat("x", 300)+"/mount", mountCap(rw)), want: codes.InvalidArgument, msg: "at most 255 bytes"},
		{name: "255-byte target element", req: publishReq(goodID, "/pods/"+strings.Repeat("x", 255)+"/mount", mountCap(rw))},
		{name: "target longer than PATH_MAX", req: publishReq(goodID, strings.Repeat("/"+strings.Repeat("x", 200), 21), mountCap(rw)), want: codes.InvalidArgument, msg: "at most 4095 bytes"},
		{
			name: "no access type",
			req:  publishReq(goodID, goodTP, &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: rw}}),
			want: codes.InvalidArgument, msg: "no access type",
		},
		{name: "multi-node reader", req: publishReq(goodID, goodTP, mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY)), want: codes.InvalidArgument, msg: "one node"},
		{name: "multi-node single writer", req: publishReq(goodID, goodTP, mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER)), want: codes.InvalidArgument, msg: "one node"},
		{name: "multi-node multi writer", req: publishReq(goodID, goodTP, mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)), want: codes.InvalidArgument, msg: "one node"},
		{name: "unknown access mode", req: publishReq(goodID, goodTP, mountCap(csi.VolumeCapability_AccessMode_UNKNOWN)), want: codes.InvalidArgument, msg: "not a known access mode"},
		{name: "undefined access mode", req: publishReq(goodID, goodTP, mountCap(99)), want: codes.InvalidArgument, msg: "not a known access mode"},
		{name: "filesystem option", req: publishReq(goodID, goodTP, mountCap(rw, "nosuid", "discard")), want: codes.InvalidArgument, msg: `"discard"`},
		{name: "option with value", req: publishReq(goodID, goodTP, mountCap(rw, "uid=1000")), want: codes.InvalidArgument, msg: `"uid=1000"`},
		{name: "bind in flags", req: publishReq(goodID, goodTP, mountCap(rw, "remount")), want: codes.InvalidArgument, msg: `"remount"`},
		{
			name: "rw flag on readonly publish",
			req: func() *csi.NodePublishVolumeRequest {
				r := publishReq(goodID, goodTP, mountCap(rw, "rw"))
				r.Readonly = true
				return r
			}(),
			want: codes.InvalidArgument, msg: `"rw"`,
		},
		{name: "rw flag with reader-only mode", req: publishReq(goodID, goodTP, mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, "rw")), want: codes.InvalidArgument, msg: `"rw"`},
		{name: "rw and ro flags", req: publishReq(goodID, goodTP, mountCap(rw, "rw", "ro")), want: codes.InvalidArgument, msg: `"rw"`},
		{name: "fs type", req: publishReq(goodID, goodTP, &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: rw},
		}), want: codes.InvalidArgument, msg: "fs_type"},
		{name: "malformed ID", req: publishReq("pvc-123", goodTP, mountCap(rw)), want: codes.NotFound, msg: "not a dirvol volume ID"},
		{name: "path-like ID", req: publishReq("../../etc", goodTP, mountCap(rw)), want: codes.NotFound, msg: "not a dirvol volume ID"},
		// Every InvalidArgument comes before the ID's shape is judged.
		{name: "malformed ID and no target", req: publishReq("pvc-123", "", mountCap(rw)), want: codes.InvalidArgument, msg: "target_path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkCode(t, validateNodePublishVolume(tt.req), tt.want, tt.msg)
		})
	}
}

func TestValidateNodeUnpublishVolume(t *testing.T) {
	tests := []struct {
		name string
		req  *csi.NodeUnpublishVolumeRequest
		want codes.Code
		msg  string
	}{
		{name: "ok", req: &csi.NodeUnpublishVolumeRequest{VolumeId: goodID, TargetPath: goodTP}},
		{name: "no volume ID", req: &csi.NodeUnpublishVolumeRequest{TargetPath: goodTP}, want: codes.InvalidArgument, msg: "volume_id is required"},
		{name: "no target", req: &csi.NodeUnpublishVolumeRequest{VolumeId: goodID}, want: codes.InvalidArgument, msg: "target_path is required"},
		{name: "relative target", req: &csi.NodeUnpublishVolumeRequest{VolumeId: goodID, TargetPath: "mount"}, want: codes.InvalidArgument, msg: "not an absolute path"},
		{name: "300-byte target element", req: &csi.NodeUnpublishVolumeRequest{VolumeId: goodID, TargetPath: "/pods/" + strings.Repeat("x", 300)}, want: codes.InvalidArgument, msg: "at most 255 bytes"},
		{name: "malformed ID", req: &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-XYZ", TargetPath: goodTP}, want: codes.NotFound, msg: "not a dirvol volume ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkCode(t, validateNodeUnpublishVolume(tt.req), tt.want, tt.msg)
		})
	}
}

func TestValidateNodeGetVolumeStats(t *testing.T) {
	tests := []struct {
		name string
		req  *csi.NodeGetVolumeStatsRequest
		want codes.Code
		msg  string
	}{
		{name: "ok", req: &csi.NodeGetVolumeStatsRequest{VolumeId: goodID, VolumePath: goodTP}},
		// Judged later: a path where the volume is not published is NotFound.
		{name: "relative path passes", req: &csi.NodeGetVolumeStatsRequest{VolumeId: goodID, VolumePath: "some/path"}},
		{name: "no volume ID", req: &csi.NodeGetVolumeStatsRequest{VolumePath: goodTP}, want: codes.InvalidArgument, msg: "volume_id is required"},
		{name: "no path", req: &csi.NodeGetVolumeStatsRequest{VolumeId: goodID}, want: codes.InvalidArgument, msg: "volume_path is required"},
		{name: "malformed ID", req: &csi.NodeGetVolumeStatsRequest{VolumeId: "id", VolumePath: goodTP}, want: codes.NotFound, msg: "not a dirvol volume ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkCode(t, validateNodeGetVolumeStats(tt.req), tt.want, tt.msg)
		})
	}
}

func TestValidateNodeGetVolumeHealth(t *testing.T) {
	tests := []struct {
		name string
		req  *csi.NodeGetVolumeHealthRequest
		want codes.Code
		msg  string
	}{
		{name: "ok without path", req: &csi.NodeGetVolumeHealthRequest{VolumeId: goodID}},
		{name: "ok with path", req: &csi.NodeGetVolumeHealthRequest{VolumeId: goodID, VolumePublishPath: goodTP}},
		{name: "staging path ignored", req: &csi.NodeGetVolumeHealthRequest{VolumeId: goodID, StagingTargetPath: "relative"}},
		{name: "no volume ID", req: &csi.NodeGetVolumeHealthRequest{}, want: codes.InvalidArgument, msg: "volume_id is required"},
		{name: "relative path", req: &csi.NodeGetVolumeHealthRequest{VolumeId: goodID, VolumePublishPath: "x/y"}, want: codes.InvalidArgument, msg: "volume_publish_path"},
		{name: "malformed ID", req: &csi.NodeGetVolumeHealthRequest{VolumeId: "vol-1"}, want: codes.NotFound, msg: "not a dirvol volume ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkCode(t, validateNodeGetVolumeHealth(tt.req), tt.want, tt.msg)
		})
	}
}

func expandReq(id, path string, required, limit int64) *csi.NodeExpandVolumeRequest {
	return &csi.NodeExpandVolumeRequest{
		VolumeId:      id,
		VolumePath:    path,
		CapacityRange: &csi.CapacityRange{RequiredBytes: required, LimitBytes: limit},
	}
}

func TestValidateNodeExpandVolume(t *testing.T) {
	rw := csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	withCap := func(c *csi.VolumeCapability) *csi.NodeExpandVolumeRequest {
		r := expandReq(goodID, goodTP, 1<<30, 0)
		r.VolumeCapability = c
		return r
	}
	tests := []struct {
		name string
		req  *csi.NodeExpandVolumeRequest
		want codes.Code
		msg  string
	}{
		{name: "ok", req: expandReq(goodID, goodTP, 2<<30, 0)},
		{name: "ok with limit", req: expandReq(goodID, goodTP, 2<<30, 3<<30)},
		{name: "ok limit only", req: expandReq(goodID, goodTP, 0, 3<<30)},
		{name: "ok with mount capability", req: withCap(mountCap(rw))},
		{name: "ok with block capability", req: withCap(blockCap(rw))},
		{name: "staging path ignored", req: func() *csi.NodeExpandVolumeRequest {
			r := expandReq(goodID, goodTP, 1<<30, 0)
			r.StagingTargetPath = "relative/../x"
			return r
		}()},
		{name: "nil request", req: nil, want: codes.InvalidArgument, msg: "volume_id is required"},
		{name: "no volume ID", req: expandReq("", goodTP, 1<<30, 0), want: codes.InvalidArgument, msg: "volume_id is required"},
		{name: "no volume path", req: expandReq(goodID, "", 1<<30, 0), want: codes.InvalidArgument, msg: "volume_path is required"},
		{name: "relative volume path passes", req: expandReq(goodID, "some/path", 1<<30, 0)},
		{name: "dot-dot in a relative volume path", req: expandReq(goodID, "a/../b", 1<<30, 0), want: codes.InvalidArgument, msg: `".."`},
		{name: "dot-dot in volume path", req: expandReq(goodID, "/var/lib/kubelet/pods/../../etc", 1<<30, 0), want: codes.InvalidArgument, msg: `".."`},
		{name: "NUL in volume path", req: expandReq(goodID, "/a\x00b", 1<<30, 0), want: codes.InvalidArgument, msg: "NUL"},
		// Judged once the volume is known: see TestNodeExpandVolume.
		{name: "no capacity range passes", req: &csi.NodeExpandVolumeRequest{VolumeId: goodID, VolumePath: goodTP}},
		{name: "unknown volume without capacity range", req: &csi.NodeExpandVolumeRequest{VolumeId: "pvc-1", VolumePath: "some/path"}, want: codes.NotFound},
		{name: "empty capacity range", req: expandReq(goodID, goodTP, 0, 0), want: codes.InvalidArgument, msg: "neither"},
		{name: "negative required", req: expandReq(goodID, goodTP, -1, 0), want: codes.InvalidArgument, msg: "negative"},
		{name: "negative limit", req: expandReq(goodID, goodTP, 1, -1), want: codes.InvalidArgument, msg: "negative"},
		{name: "required over limit", req: expandReq(goodID, goodTP, 2<<30, 1<<30), want: codes.InvalidArgument, msg: "exceeds limit_bytes"},
		{name: "refused capability", req: withCap(mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)), want: codes.InvalidArgument, msg: "volume_capability"},
		{name: "malformed ID", req: expandReq("pvc-1", goodTP, 1<<30, 0), want: codes.NotFound, msg: "not a dirvol volume ID"},
		{name: "malformed ID and no path", req: expandReq("pvc-1", "", 1<<30, 0), want: codes.InvalidArgument, msg: "volume_path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkCode(t, validateNodeExpandVolume(tt.req), tt.want, tt.msg)
		})
	}
}

func TestReadOnlyAndMountOptions(t *testing.T) {
	rw := csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	tests := []struct {
		name     string
		req      *csi.NodePublishVolumeRequest
		wantRO   bool
		wantOpts []string
	}{
		{name: "read-write", req: publishReq(goodID, goodTP, mountCap(rw)), wantOpts: []string{"bind"}},
		{name: "readonly field", req: &csi.NodePublishVolumeRequest{VolumeCapability: mountCap(rw), Readonly: true}, wantRO: true, wantOpts: []string{"bind", "ro"}},
		{name: "block reader-only mode", req: publishReq(goodID, goodTP, blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY)), wantRO: true, wantOpts: []string{"bind", "ro"}},
		{name: "block readonly field", req: &csi.NodePublishVolumeRequest{VolumeCapability: blockCap(rw), Readonly: true}, wantRO: true, wantOpts: []string{"bind", "ro"}},
		{name: "reader-only mode", req: publishReq(goodID, goodTP, mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY)), wantRO: true, wantOpts: []string{"bind", "ro"}},
		{name: "ro flag goes last", req: publishReq(goodID, goodTP, mountCap(rw, "ro", "nosuid")), wantRO: true, wantOpts: []string{"bind", "nosuid", "ro"}},
		{name: "flags kept in order, once", req: publishReq(goodID, goodTP, mountCap(rw, "noexec", "nodev", "noexec")), wantOpts: []string{"bind", "noexec", "nodev"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := readOnly(tt.req); got != tt.wantRO {
				t.Errorf("readOnly() = %t, want %t", got, tt.wantRO)
			}
			if got := mountOptions(tt.req); strings.Join(got, ",") != strings.Join(tt.wantOpts, ",") {
				t.Errorf("mountOptions() = %v, want %v", got, tt.wantOpts)
			}
		})
	}
}
