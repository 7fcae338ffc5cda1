// Package capability decides which CSI volume capabilities dirvol serves.
// The controller checks them at CreateVolume and ValidateVolumeCapabilities,
// the node again at NodePublishVolume; both must give the same answer.
package capability

import (
	"errors"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// ErrUnsupported wraps every reason a capability is refused.
var ErrUnsupported = errors.New("unsupported volume capability")

// bindMountFlags are the per-mount VFS flags a bind mount can be remounted
// with. Anything else (filesystem options such as "discard") cannot apply to
// a directory bind mount and would fail at publish time, so it is refused up
// front.
var bindMountFlags = map[string]bool{
	"ro": true, "rw": true,
	"nosuid": true, "suid": true,
	"nodev": true, "dev": true,
	"noexec": true, "exec": true,
	"noatime": true, "atime": true,
	"nodiratime": true, "diratime": true,
	"relatime": true, "norelatime": true,
	"strictatime": true, "nostrictatime": true,
	"nosymfollow": true,
}

// Check returns nil when dirvol can serve c, else an error wrapping
// ErrUnsupported that says what to change. Both access types are served:
// mount (a directory, bind-mounted) and block (a sparse file attached to a
// loop device); which one a given volume has is the volume's to say.
func Check(c *csi.VolumeCapability) error {
	if c == nil {
		return fmt.Errorf("volume capability is empty: %w", ErrUnsupported)
	}
	switch at := c.GetAccessType().(type) {
	case *csi.VolumeCapability_Block:
		// A loop device over a file in the pool. The access type is a
		// oneof, so a block capability cannot carry an fs_type or mount
		// flags: there is nothing more to check.
	case *csi.VolumeCapability_Mount:
		if fs := at.Mount.GetFsType(); fs != "" {
			return fmt.Errorf("fs_type %.64q: dirvol volumes are directories on the pool's filesystem, leave fsType unset: %w", fs, ErrUnsupported)
		}
		for _, f := range at.Mount.GetMountFlags() {
			if !bindMountFlags[f] {
				return fmt.Errorf("mount flag %.64q cannot apply to a bind-mounted directory (allowed: ro, rw, [no]suid, [no]dev, [no]exec, [no]atime, [no]diratime, [no]relatime, [no]strictatime, nosymfollow): %w", f, ErrUnsupported)
			}
		}
	default:
		return fmt.Errorf("volume capability has no access type (mount or block): %w", ErrUnsupported)
	}
	mode := c.GetAccessMode().GetMode()
	switch mode {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
		return nil
	case csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
		return fmt.Errorf("access mode %s: dirvol volumes live on one node's disk, use a ReadWriteOnce or ReadWriteOncePod access mode: %w", mode, ErrUnsupported)
	default:
		return fmt.Errorf("access mode %s is not a known access mode: %w", mode, ErrUnsupported)
	}
}

// CheckAll checks every capability and names the first refused one.
func CheckAll(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return fmt.Errorf("volume_capabilities is empty: %w", ErrUnsupported)
	}
	for i, c := range caps {
		if err := Check(c); err != nil {
			return fmt.Errorf("volume_capabilities[%d]: %w", i, err)
		}
	}
	return nil
}

// Block reports whether caps ask for a block volume rather than a
// filesystem. A volume is one or the other, so capabilities that mix the
// two access types are refused. Each capability is checked with Check first.
func Block(caps []*csi.VolumeCapability) (bool, error) {
	if err := CheckAll(caps); err != nil {
		return false, err
	}
	block := caps[0].GetBlock() != nil
	for i, c := range caps[1:] {
		if (c.GetBlock() != nil) != block {
			return false, fmt.Errorf("volume_capabilities[0] and [%d] ask for different access types (block and mount); a volume is either a block device or a filesystem: %w", i+1, ErrUnsupported)
		}
	}
	return block, nil
}

// ReadOnly reports whether c asks for read-only access (a *_READER_ONLY
// access mode), for either access type.
func ReadOnly(c *csi.VolumeCapability) bool {
	switch c.GetAccessMode().GetMode() {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		return true
	}
	return false
}
