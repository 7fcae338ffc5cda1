package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/internal/mountuse"
	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/controller"
	"github.com/dirvol/dirvol/pkg/identity"
	"github.com/dirvol/dirvol/pkg/node"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/registration"
	"github.com/dirvol/dirvol/pkg/server"
	"github.com/dirvol/dirvol/pkg/volume"
	"github.com/kubernetes-csi/csi-lib-utils/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"
)

// Driver is a configured dirvol process, ready to Run.
type Driver struct {
	cfg  Config
	lock *os.File
	vols *volume.Manager
	node *node.Server
	srv  *server.Server
	reg  *registration.Server
}

// New opens the catalog and pools and builds the services. It starts
// nothing: recovery and serving happen in Run.
func New(ctx context.Context, cfg Config, mounter mount.Interface) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	d, err := build(ctx, cfg, mounter)
	if err != nil {
		lock.Close()
		return nil, err
	}
	d.lock = lock
	return d, nil
}

func build(ctx context.Context, cfg Config, mounter mount.Interface) (*Driver, error) {
	logger := klog.FromContext(ctx)
	// The catalog is read by Recover, in Run, once the endpoint is up.
	cat := catalog.New(cfg.catalogDir())
	pools := make(map[string]pool.Pool)
	deps := pool.Deps{Mounter: mounter, Exec: utilexec.New(), Loops: loopdev.New()}
	for _, spec := range cfg.poolSpecs() {
		p, err := pool.Open(ctx, spec, deps)
		if err != nil {
			return nil, err
		}
		logPool(logger, spec, p)
		pools[spec.Name] = p
	}
	// Delete asks the kernel whether the node service still has the
	// volume mounted; the two services share no state.
	inUse := mountuse.New(mounter, loopdev.New())
	vols, err := volume.New(cat, pools, defaultPool, cfg.DefaultVolumeBytes, time.Now, volume.WithUseChecker(inUse))
	if err != nil {
		return nil, err
	}
	ctrl, err := controller.New(controller.Config{NodeID: cfg.NodeID}, vols)
	if err != nil {
		return nil, err
	}
	nodeSrv, err := node.New(node.Config{NodeID: cfg.NodeID, MaxVolumes: cfg.MaxVolumes, Protected: []string{cfg.DataDir}}, vols, mounter)
	if err != nil {
		return nil, err
	}
	ready := readiness(vols)
	ident := identity.New(cfg.DriverName, cfg.Version, ready)

	mm := metrics.NewCSIMetricsManagerForPlugin(cfg.DriverName)
	mm.GetRegistry().RawMustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dirvol_orphan_directories",
		Help: "Volume and snapshot directories under a pool that no catalog record owns, found at the last start. They are never deleted automatically; see the log for their paths.",
	}, func() float64 { return float64(len(vols.Orphans())) }))
	mm.GetRegistry().RawMustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dirvol_catalog_problems",
		Help: "Entries of the catalog directory found at the last start that are not records the driver can read (corrupt, unknown state, oversized, stray files or directories). They are left in place, their volumes neither served nor deleted; see the log for their paths.",
	}, func() float64 { return float64(len(vols.CatalogProblems())) }))
	mm.GetRegistry().RawMustRegister(newPoolSizesCollector(vols))

	// /readyz answers as Probe does; /healthz (liveness) consults neither
	// recovery nor pools, so neither a long recovery nor a read-only pool
	// gets the container restarted in the middle of the kubelet's calls.
	srv, err := server.New(cfg.Server, mm, ready, ident.SetStopping)
	if err != nil {
		return nil, err
	}
	csi.RegisterIdentityServer(srv, ident)
	csi.RegisterControllerServer(srv, ctrl)
	csi.RegisterNodeServer(srv, nodeSrv)
	reg, err := registration.New(cfg.Registration, cfg.DriverName, srv.Listening())
	if err != nil {
		return nil, err
	}
	mm.GetRegistry().RawMustRegister(reg.Collectors()...)
	return &Driver{cfg: cfg, vols: vols, node: nodeSrv, srv: srv, reg: reg}, nil
}

// readiness is what Probe and /readyz report: recovery done, every pool
// writable, and every pool enforcing the sizes its backend promises (btrfs
// quota status). /healthz checks none of it: a restart repairs no pool.
func readiness(vols *volume.Manager) func() error {
	return func() error {
		if !vols.Ready() {
			return errors.New("volume catalog recovery has not finished")
		}
		if err := vols.Writable(); err != nil {
			return err
		}
		return vols.SizeProblem()
	}
}

// logPool says where the pool is, which backend serves it and whether it
// enforces sizes, so that an operator sees at start what a PVC's size means.
func logPool(logger klog.Logger, spec pool.Spec, p pool.Pool) {
	kv := []any{"pool", spec.Name, "path", p.Root(), "backend", p.Backend(), "sizesEnforced", p.EnforcesSize()}
	if spec.Image != "" {
		kv = append(kv, "image", spec.Image, "imageBytes", spec.Size)
	}
	switch problem := p.SizeProblem(); {
	case problem != nil:
		kv = append(kv, "note", problem.Error())
	case p.EnforcesSize():
		kv = append(kv, "note", "a write past a volume's size fails (btrfs quota group limits)")
	default:
		kv = append(kv, "note", "sizes are reserved for capacity reporting, not enforced: a volume can outgrow its size")
	}
	logger.Info("Pool ready", kv...)
}

// Run serves until ctx is cancelled. The catalog is recovered while the
// endpoint is already up, so Probe can say "not ready" instead of the
// socket being absent; volume RPCs answer Unavailable until then.
func (d *Driver) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	logger.Info("Starting dirvol", "driverName", d.cfg.DriverName, "version", d.cfg.Version,
		"nodeID", d.cfg.NodeID, "dataDir", d.cfg.DataDir, "endpoint", d.cfg.Server.Endpoint)
	defer d.lock.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.srv.Run(gctx) })
	// Registers with the kubelet once the CSI endpoint listens.
	g.Go(func() error { return d.reg.Run(gctx) })
	g.Go(func() error {
		start := time.Now()
		if err := d.vols.Recover(gctx); err != nil {
			return fmt.Errorf("recover volume catalog: %w", err)
		}
		// Loop devices a crash left attached to pool files; safe while
		// node RPCs are served (it takes their volume locks).
		if err := d.node.Recover(gctx); err != nil {
			logger.Error(err, "Cannot look for leftover loop devices; they stay attached until the next start")
		}
		logger.Info("Ready", "recoverySeconds", time.Since(start).Seconds())
		// Devices whose detach failed or was deferred at unpublish.
		g.Go(func() error { return d.node.Run(gctx, d.cfg.LoopSweep) })
		return d.vols.Run(gctx, d.cfg.UsageRefresh)
	})
	return g.Wait()
}
