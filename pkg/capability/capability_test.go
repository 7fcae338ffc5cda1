package capability

import (
	"errors"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func mountCap(mode csi.VolumeCapability_AccessMode_Mode, fsType string, flags ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType, MountFlags: flags}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		c    *csi.VolumeCapability
		ok   bool
	}{
		{"nil", nil, false},
		{"single node writer", mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, ""), true},
		{"single node reader", mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, ""), true},
		{"single node single writer", mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER, ""), true},
		{"single node multi writer", mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER, ""), true},
		{"multi node reader", mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY, ""), false},
		{"multi node single writer", mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER, ""), false},
		{"multi node multi writer", mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, ""), false},
		{"unknown mode", mountCap(csi.VolumeCapability_AccessMode_UNKNOWN, ""), false},
		{"no access mode", &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}}, false},
		{"fs type", mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "ext4"), false},
		{"bind flags", mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "", "ro", "noexec", "nosuid", "nodev", "noatime"), true},
		{"fs option flag", mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "", "discard"), false},
		{"block", &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		}, false},
		{"no access type", &csi.VolumeCapability{
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.c)
			if (err == nil) != tc.ok {
				t.Fatalf("Check() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v does not wrap ErrUnsupported", err)
			}
		})
	}
}

func TestCheckAll(t *testing.T) {
	good := mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "")
	bad := mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "")
	if err := CheckAll(nil); err == nil {
		t.Error("CheckAll(nil) = nil, want error")
	}
	if err := CheckAll([]*csi.VolumeCapability{good, good}); err != nil {
		t.Errorf("CheckAll(good, good) = %v", err)
	}
	if err := CheckAll([]*csi.VolumeCapability{good, bad}); err == nil {
		t.Error("CheckAll(good, bad) = nil, want error")
	}
}

func TestReadOnly(t *testing.T) {
	if !ReadOnly(mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, "")) {
		t.Error("reader-only mode is not read-only")
	}
	if ReadOnly(mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "")) {
		t.Error("writer mode is read-only")
	}
}
