// Package app wires dirvol together: it turns a Config into the catalog,
// pools, volume core and the three CSI services on one gRPC server, and runs
// them. cmd/driver parses flags into a Config; the sanity suite builds one
// directly.
package app

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/registration"
	"github.com/dirvol/dirvol/pkg/server"
)

// DefaultDriverName is the CSI driver name when none is given.
const DefaultDriverName = "dirvol.csi.dev"

// Config holds every setting of a dirvol process.
type Config struct {
	// Server holds the gRPC endpoint, HTTP endpoint and shutdown settings.
	Server server.Config
	// Registration says where the driver registers itself with the
	// kubelet; its zero value (no directory) registers nowhere.
	Registration registration.Config
	// DriverName is the CSI driver name (GetPluginInfo, CSIDriver object).
	DriverName string
	// Version is reported by GetPluginInfo.
	Version string
	// NodeID identifies this node; volumes made here carry it as topology.
	NodeID string
	// DataDir holds the catalog and is the root of the pool named
	// "default" unless Pools names one; image pools are mounted under
	// DataDir/pools unless their spec says where.
	DataDir string
	// Pools are the pools beside the default one; a pool named "default"
	// here replaces the one rooted at DataDir (so that it can be an image
	// pool, for example). Validate fills in the mount point of image pools
	// that name none.
	Pools pool.Specs
	// MaxVolumes is reported by NodeGetInfo; 0 means no limit.
	MaxVolumes int64
	// DefaultVolumeBytes is the size of a volume whose request names none.
	DefaultVolumeBytes int64
	// UsageRefresh is how often every volume's usage is measured for
	// capacity reporting.
	UsageRefresh time.Duration
	// LoopSweep is how often loop devices of block volumes that nothing
	// uses any more (a detach that failed or was deferred) are looked for
	// and detached; DeleteVolume refuses a block volume until its devices
	// are gone.
	LoopSweep time.Duration
}

// AddFlags registers the settings as flags on fs. NodeID's default is left
// to the caller, which knows the hostname.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	c.Server.AddFlags(fs)
	c.Registration.AddFlags(fs)
	fs.StringVar(&c.DriverName, "driver-name", DefaultDriverName, "CSI driver name.")
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "This node's ID (default: the hostname).")
	fs.StringVar(&c.DataDir, "data-dir", "/var/lib/dirvol", "Directory for the catalog; also the root of the pool named \"default\" unless --pool gives one.")
	fs.Var(&c.Pools, "pool", "A pool (repeatable): name=NAME,path=DIR[,backend=dir|btrfs] (backend detected when omitted: btrfs on btrfs, else dir), "+
		"or an image-backed btrfs pool name=NAME,image=FILE,size=SIZE[,path=MOUNTPOINT] (mounted at <data-dir>/pools/NAME by default). "+
		"A pool named \"default\" replaces the one rooted at --data-dir.")
	fs.Int64Var(&c.MaxVolumes, "max-volumes", 0, "Most volumes this node accepts, reported by NodeGetInfo; 0 means no limit.")
	fs.Int64Var(&c.DefaultVolumeBytes, "default-volume-bytes", 1<<30, "Size of a volume whose request names none.")
	fs.DurationVar(&c.UsageRefresh, "usage-refresh", time.Minute, "How often volume usage is measured for GetCapacity.")
	fs.DurationVar(&c.LoopSweep, "loop-sweep", time.Minute, "How often loop devices of block volumes that nothing uses are detached.")
}

// Validate reports the first setting that is not usable.
func (c *Config) Validate() error {
	if err := c.Server.Validate(); err != nil {
		return err
	}
	if err := c.Registration.Validate(); err != nil {
		return err
	}
	switch {
	case c.DriverName == "":
		return errors.New("--driver-name must not be empty")
	case c.NodeID == "":
		return errors.New("--node-id must not be empty")
	case !filepath.IsAbs(c.DataDir):
		return fmt.Errorf("--data-dir %q must be an absolute path", c.DataDir)
	case c.MaxVolumes < 0:
		return fmt.Errorf("--max-volumes %d must not be negative", c.MaxVolumes)
	case c.DefaultVolumeBytes <= 0:
		return fmt.Errorf("--default-volume-bytes %d must be positive", c.DefaultVolumeBytes)
	case c.UsageRefresh <= 0:
		return fmt.Errorf("--usage-refresh %s must be positive", c.UsageRefresh)
	case c.LoopSweep <= 0:
		return fmt.Errorf("--loop-sweep %s must be positive", c.LoopSweep)
	}
	for i := range c.Pools {
		if c.Pools[i].Image != "" && c.Pools[i].Path == "" {
			c.Pools[i].Path = filepath.Join(filepath.Clean(c.DataDir), poolsDir, c.Pools[i].Name)
		}
	}
	specs := c.poolSpecs()
	if err := pool.ValidateSpecs(specs); err != nil {
		return err
	}
	catalog := c.catalogDir()
	for _, sp := range specs {
		if sp.Overlaps(catalog) {
			return fmt.Errorf("pool %q (%s) overlaps the catalog %s; give the pool its own directory", sp.Name, sp.Path, catalog)
		}
	}
	return nil
}

// defaultPool is the name of the pool rooted at DataDir unless Pools has
// one of that name.
const defaultPool = "default"

// poolsDir, under DataDir, holds the mount points of image pools whose
// spec names none.
const poolsDir = "pools"

func (c *Config) catalogDir() string { return filepath.Join(c.DataDir, "catalog") }

// poolSpecs lists every pool: Pools, and the default pool rooted at DataDir
// when Pools has none named "default". A pool rooted at DataDir shares that
// directory with the catalog and the mount points of image pools.
func (c *Config) poolSpecs() []pool.Spec {
	dataDir := filepath.Clean(c.DataDir)
	specs := make([]pool.Spec, 0, len(c.Pools)+1)
	hasDefault := false
	for _, sp := range c.Pools {
		hasDefault = hasDefault || sp.Name == defaultPool
		sp.Shared = sp.Path == dataDir
		specs = append(specs, sp)
	}
	if !hasDefault {
		specs = append([]pool.Spec{{Name: defaultPool, Path: dataDir, Shared: true}}, specs...)
	}
	return specs
}
