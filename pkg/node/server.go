// Package node is dirvol's CSI Node service: it bind-mounts volume
// directories where the kubelet asks, attaches block volumes to loop devices
// and exposes those, grows volumes on the node that holds them, reports
// usage and condition, and describes the node. It validates requests,
// chooses gRPC codes and takes per-key locks; every rule about the bytes of
// a volume stays in pkg/volume.
package node

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/keylock"
	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/pkg/topology"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"
)

// labelValue is a Kubernetes label value. The node ID becomes the value of
// the topology segment that the kubelet copies into a Node label, so a node
// ID that is not a label value breaks registration. (It also keeps the ID
// far below the 256 bytes the CSI spec allows for node_id.)
var labelValue = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$`)

// Config holds the node service's settings.
type Config struct {
	// NodeID identifies this node to the CO and names it in the topology of
	// every volume made here (usually the Kubernetes node name). Required.
	NodeID string
	// MaxVolumes is reported as max_volumes_per_node: how many volumes the
	// CO may publish on this node. 0 means no limit.
	MaxVolumes int64
	// Protected are directories of the driver's own besides the pool roots
	// (the data directory, which holds the catalog and the mount points of
	// image pools): no target may be one of them, lie inside one or
	// contain one.
	Protected []string
}

// Validate checks the settings.
func (c Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("node: node ID is required")
	case !labelValue.MatchString(c.NodeID):
		return fmt.Errorf("node: node ID %q is not a Kubernetes label value (at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit); it becomes the value of the topology label %s", c.NodeID, topology.NodeKey)
	case c.MaxVolumes < 0:
		return fmt.Errorf("node: max volumes %d is negative; use 0 for no limit", c.MaxVolumes)
	}
	for _, p := range c.Protected {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("node: protected directory %q is not an absolute path", p)
		}
	}
	return nil
}

// publishKey is what NodePublishVolume and NodeUnpublishVolume lock: one
// volume at one target path.
type publishKey struct {
	volumeID   string
	targetPath string
}

// loopDevices is what the node service needs of the kernel's loop devices:
// *loopdev.Loops, or a fake in unit tests.
type loopDevices interface {
	Attach(file string, opts loopdev.Options) (loopdev.Device, error)
	Find(file string) ([]loopdev.Device, error)
	List() ([]loopdev.Device, error)
	At(path string) (loopdev.Device, bool, error)
	Refresh(path string) (int64, error)
	Size(path string) (int64, error)
	Detach(path string) error
	// BindMounts lists where a device node is bind-mounted, from the
	// mount table.
	BindMounts(path string) ([]string, error)
}

// Server implements csi.NodeServer over a volume.Manager, a mounter and the
// kernel's loop devices.
//
// Locks: NodePublishVolume and NodeUnpublishVolume hold the pair (volume ID,
// target path) and the volume ID (lockPublish), and answer Aborted when
// either is busy. The volume ID makes "where else is this volume mounted"
// and the mount one step: two publishes of a single-writer volume cannot
// both see it unmounted, two targets of a block volume never get two
// devices, and a device is never detached while another target is being
// mounted from it. NodePublishVolume also holds the volume in the volume
// core (volume.Manager.Hold), which DeleteVolume takes too, so that a
// delete's look for mounts never falls between a publish's lookup and its
// mount. NodeExpandVolume holds the volume ID. Recover takes the
// volume ID of each device it may detach and skips a device whose volume is
// busy. All of them are try-locks: a busy key is Aborted (or skipped), never
// waited for.
// NodeGetVolumeStats and NodeGetVolumeHealth take no lock: they only read
// the catalog, the mount table, loop device sizes and the directory.
// NodeGetInfo and NodeGetCapabilities read nothing that changes.
type Server struct {
	csi.UnimplementedNodeServer

	cfg     Config
	vols    *volume.Manager
	mounter mount.Interface
	binds   binder
	loops   loopDevices
	targets keylock.Locks[publishKey]
	volumes keylock.Locks[string]
}

var _ csi.NodeServer = (*Server)(nil)

// New returns a node service publishing the volumes of vols with mounter,
// and block volumes through the host's loop devices.
func New(cfg Config, vols *volume.Manager, mounter mount.Interface) (*Server, error) {
	return newServer(cfg, vols, mounter, kernelBinder{}, loopdev.New())
}

func newServer(cfg Config, vols *volume.Manager, mounter mount.Interface, binds binder, loops loopDevices) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if vols == nil {
		return nil, errors.New("node: volume manager is required")
	}
	if mounter == nil {
		return nil, errors.New("node: mounter is required")
	}
	if binds == nil {
		return nil, errors.New("node: binder is required")
	}
	if loops == nil {
		return nil, errors.New("node: loop devices are required")
	}
	return &Server{cfg: cfg, vols: vols, mounter: mounter, binds: binds, loops: loops}, nil
}

// lockVolume takes the try-lock of a volume ID, answering Aborted when it is
// held.
func (s *Server) lockVolume(id string) (unlock func(), err error) {
	if !s.volumes.TryLock(id) {
		return nil, status.Errorf(codes.Aborted, "another operation on volume %s is in progress on this node; retry", id)
	}
	return func() { s.volumes.Unlock(id) }, nil
}

// lockPublish is the lock of NodePublishVolume and NodeUnpublishVolume: it
// refuses a target that overlaps the driver's own directories, then takes
// the try-lock of volume ID + target path and that of the volume ID,
// answering Aborted when either is held.
func (s *Server) lockPublish(id, target string) (unlock func(), err error) {
	if err := s.checkTarget(target); err != nil {
		return nil, err
	}
	key := publishKey{volumeID: id, targetPath: target}
	if !s.targets.TryLock(key) {
		return nil, status.Errorf(codes.Aborted, "an operation on volume %s at %s is already in progress; retry", id, target)
	}
	unlockVolume, err := s.lockVolume(id)
	if err != nil {
		s.targets.Unlock(key)
		return nil, err
	}
	return func() {
		unlockVolume()
		s.targets.Unlock(key)
	}, nil
}

// volumeDir returns a volume and the directory that holds its data, or a
// status error saying why it cannot.
func (s *Server) volumeDir(id string) (volume.Volume, string, error) {
	if !s.vols.Ready() {
		return volume.Volume{}, "", toStatus(fmt.Errorf("volume %s: %w; retry shortly", id, volume.ErrNotReady))
	}
	v, err := s.vols.Get(id)
	if err != nil {
		return volume.Volume{}, "", toStatus(err)
	}
	dir, err := s.vols.Path(v)
	if err != nil {
		return volume.Volume{}, "", toStatus(err)
	}
	return v, dir, nil
}
