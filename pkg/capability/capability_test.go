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

func blockCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
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
		{"block", blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER), true},
		{"block reader", blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY), true},
		{"block single writer", blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER), true},
		{"block multi writer", blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER), true},
		{"block multi node reader", blockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY), false},
		{"block multi node single writer", blockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER), false},
		{"block multi node multi writer", blockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER), false},
		{"block unknown mode", blockCap(csi.VolumeCapability_AccessMode_UNKNOWN), false},
		{"block without access mode", &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		}, false},
		{"empty block", &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Block{},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		}, true},
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
	if err := CheckAll([]*csi.VolumeCapability{good, blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}); err != nil {
		t.Errorf("CheckAll(mount, block) = %v", err)
	}
}

func TestReadOnly(t *testing.T) {
	if !ReadOnly(mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, "")) {
		t.Error("reader-only mode is not read-only")
	}
	if ReadOnly(mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "")) {
		t.Error("writer mode is read-only")
	}
	if !ReadOnly(blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY)) {
		t.Error("reader-only block mode is not read-only")
	}
}

func TestBlock(t *testing.T) {
	mnt := mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "")
	blk := blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	bad := blockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	tests := []struct {
		name      string
		caps      []*csi.VolumeCapability
		wantBlock bool
		wantErr   bool
	}{
		{name: "mount", caps: []*csi.VolumeCapability{mnt}},
		{name: "two mounts", caps: []*csi.VolumeCapability{mnt, mnt}},
		{name: "block", caps: []*csi.VolumeCapability{blk}, wantBlock: true},
		{name: "two blocks", caps: []*csi.VolumeCapability{blk, blk}, wantBlock: true},
		{name: "mount and block", caps: []*csi.VolumeCapability{mnt, blk}, wantErr: true},
		{name: "block and mount", caps: []*csi.VolumeCapability{blk, mnt}, wantErr: true},
		{name: "refused block", caps: []*csi.VolumeCapability{bad}, wantErr: true},
		{name: "none", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			block, err := Block(tt.caps)
			if (err != nil) != tt.wantErr || block != tt.wantBlock {
				t.Fatalf("Block() = %t, %v; want %t, error %t", block, err, tt.wantBlock, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v does not wrap ErrUnsupported", err)
			}
		})
	}
}
