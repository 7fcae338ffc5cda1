// Package volume is the core of dirvol: it creates, deletes and recovers
// volumes as ordered sequences of catalog records and pool operations, so
// that a crash at any instant is finished or rolled back on the next start.
// The CSI packages call it; it knows nothing of gRPC.
package volume

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dirvol/dirvol/internal/keylock"
	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"k8s.io/klog/v2"
)

// Volume is a volume's record as the catalog holds it.
type Volume = catalog.Volume

// Manager runs every volume operation of one node.
type Manager struct {
	cat             *catalog.Catalog
	pools           map[string]pool.Pool
	defaultPool     string
	defaultCapacity int64
	now             func() time.Time
	ledger          *ledger
	ready           atomic.Bool
	// expanding holds the IDs of volumes being expanded.
	expanding keylock.Locks[string]
	// creating holds the IDs of volumes and snapshots whose create is in
	// flight; a "creating" record whose ID is not here was left by a
	// failed create and is rolled back by a retry of its name.
	creating keylock.Locks[string]

	// inUse, when set, is asked before a volume's data is removed.
	inUse UseChecker
	// held holds the IDs of volumes being deleted, or being put to use by
	// a caller of Hold: the two exclude each other.
	held keylock.Locks[string]

	orphansMu sync.Mutex
	orphans   []Orphan

	// checkMu guards checkFailed: per pool, the error of its last failed
	// check, so that a lasting failure is logged once.
	checkMu     sync.Mutex
	checkFailed map[string]string
}

// UseChecker tells where a volume's data is mounted on this node, from the
// kernel's mount table and loop devices (the node service's mounts: the
// volume core itself never mounts a volume).
type UseChecker interface {
	// MountedAt returns the mount points that show path: a volume's
	// directory, or with block a block volume's file (through the loop
	// devices attached to it).
	MountedAt(path string, block bool) ([]string, error)
}

// Option sets an optional dependency of a Manager.
type Option func(*Manager)

// WithUseChecker makes Delete refuse, with ErrInUse, a volume whose data is
// still mounted on this node. Without it Delete does not look (tests of the
// volume core alone, where nothing is mounted).
func WithUseChecker(c UseChecker) Option {
	return func(m *Manager) { m.inUse = c }
}

// Orphan is a directory under a pool's volumes/ or snapshots/ that no
// catalog record owns. It is reported, never deleted: only an operator knows
// whose data it is.
type Orphan struct {
	Pool string
	Path string
	// Snapshot is set for a directory under the pool's snapshots/.
	Snapshot bool
}

// New returns a Manager over the given catalog and pools. defaultPool must be
// a key of pools; defaultCapacity is used when a request names no size. now
// is the clock (time.Now in production). Nothing is served until Recover
// returns.
func New(cat *catalog.Catalog, pools map[string]pool.Pool, defaultPool string, defaultCapacity int64, now func() time.Time, opts ...Option) (*Manager, error) {
	if _, ok := pools[defaultPool]; !ok {
		return nil, fmt.Errorf("default pool %q: %w", defaultPool, ErrUnknownPool)
	}
	if defaultCapacity <= 0 {
		return nil, fmt.Errorf("default capacity must be positive, got %d", defaultCapacity)
	}
	m := &Manager{
		cat:             cat,
		pools:           pools,
		defaultPool:     defaultPool,
		defaultCapacity: defaultCapacity,
		now:             now,
		ledger:          newLedger(),
	}
	for _, o := range opts {
		o(m)
	}
	return m, nil
}

// Ready reports whether Recover has finished.
func (m *Manager) Ready() bool { return m.ready.Load() }

// Get returns the volume with the given ID. IDs of a shape this driver never
// issues are ErrNotFound without any lookup.
func (m *Manager) Get(id string) (Volume, error) {
	if !ValidID(id) {
		return Volume{}, fmt.Errorf("%.64q is not a volume ID issued by this driver: %w", id, ErrNotFound)
	}
	if !m.Ready() {
		return Volume{}, ErrNotReady
	}
	v, err := m.cat.Get(id)
	// A volume being created was never returned; one being deleted is on
	// its way out: neither may be published or reported.
	if errors.Is(err, catalog.ErrNotFound) || (err == nil && v.State != catalog.StateReady) {
		return Volume{}, fmt.Errorf("volume %s: %w", id, ErrNotFound)
	}
	return v, err
}

// List returns every volume that CreateVolume has returned and DeleteVolume
// has not yet begun to remove, sorted by ID.
func (m *Manager) List() []Volume {
	all := m.cat.List()
	out := all[:0]
	for _, v := range all {
		if v.State == catalog.StateReady {
			out = append(out, v)
		}
	}
	return out
}

// Hold keeps volume id from being deleted while the caller puts it to use
// (the node service, while it looks the volume up and mounts it), so that
// Delete's look for mounts and a publish's mount cannot interleave. It
// answers ErrBusy while the volume is being deleted or held already; the
// caller releases it with the returned function.
func (m *Manager) Hold(id string) (release func(), err error) {
	if !m.held.TryLock(id) {
		return nil, fmt.Errorf("volume %s is being deleted or published on this node: %w", id, ErrBusy)
	}
	return func() { m.held.Unlock(id) }, nil
}

// Path returns the directory that holds a volume's data.
func (m *Manager) Path(v Volume) (string, error) {
	p, ok := m.pools[v.Pool]
	if !ok {
		return "", poolGone("volume "+v.ID, v.Pool)
	}
	return p.Path(v.ID)
}

// Usage measures a volume and remembers the figure for capacity reporting.
func (m *Manager) Usage(v Volume) (pool.Usage, error) {
	p, ok := m.pools[v.Pool]
	if !ok {
		return pool.Usage{}, poolGone("volume "+v.ID, v.Pool)
	}
	u, err := p.Usage(v.ID)
	if err != nil {
		return pool.Usage{}, err
	}
	m.ledger.setUsed(v.ID, u.Bytes)
	return u, nil
}

// FS describes the filesystem under a volume's pool.
func (m *Manager) FS(v Volume) (pool.FS, error) {
	p, ok := m.pools[v.Pool]
	if !ok {
		return pool.FS{}, poolGone("volume "+v.ID, v.Pool)
	}
	return p.Stat()
}

// Capacity is what a pool can still promise.
type Capacity struct {
	// Available is the filesystem's free space minus the space promised to
	// existing volumes and not yet written by them.
	Available int64
	// MaxVolume is the largest volume the pool can promise now: what
	// CreateVolume accepts without ResourceExhausted. A volume takes its
	// size from one filesystem, so it is Available.
	MaxVolume int64
	// Promised is the space promised to volumes and not yet written.
	Promised int64
	// Enforced reports whether the pool enforces volume sizes.
	Enforced bool
}

// Capacity reports what pool (the default pool when empty) can promise.
func (m *Manager) Capacity(poolName string) (Capacity, error) {
	if poolName == "" {
		poolName = m.defaultPool
	}
	p, ok := m.pools[poolName]
	if !ok {
		return Capacity{}, fmt.Errorf("pool %q: %w", poolName, ErrUnknownPool)
	}
	fs, err := p.Stat()
	if err != nil {
		return Capacity{}, err
	}
	promised := m.ledger.promised(poolName)
	available := max(0, fs.AvailableBytes-promised)
	return Capacity{Available: available, MaxVolume: available, Promised: promised, Enforced: p.EnforcesSize()}, nil
}

// Writable returns nil when every pool accepts new volumes.
func (m *Manager) Writable() error {
	for _, name := range m.PoolNames() {
		if err := m.pools[name].Writable(); err != nil {
			return err
		}
	}
	return nil
}

// SizeProblem returns nil when every pool whose backend enforces volume
// sizes enforces them as of its last check, else the first pool's problem.
// Probe reports it; /healthz does not, since a restart repairs nothing.
func (m *Manager) SizeProblem() error {
	for _, name := range m.PoolNames() {
		if err := m.pools[name].SizeProblem(); err != nil {
			return fmt.Errorf("pool %q: %w", name, err)
		}
	}
	return nil
}

// PoolSizes is whether one pool enforces volume sizes.
type PoolSizes struct {
	Pool string
	// Enforced: a write past a volume's size fails.
	Enforced bool
	// Problem is why a pool whose backend enforces sizes does not now.
	Problem error
}

// Sizes reports, per pool and without I/O, whether sizes are enforced as
// of the last check, for metrics.
func (m *Manager) Sizes() []PoolSizes {
	out := make([]PoolSizes, 0, len(m.pools))
	for _, name := range m.PoolNames() {
		p := m.pools[name]
		out = append(out, PoolSizes{Pool: name, Enforced: p.EnforcesSize(), Problem: p.SizeProblem()})
	}
	return out
}

// CheckPools checks every pool (see pool.Pool.Check). The pools log what
// their size checks find; other failures (an image not mounted, an
// unreadable status) are logged here when they first appear and when they
// end, not at every check.
func (m *Manager) CheckPools(ctx context.Context) {
	logger := klog.FromContext(ctx)
	m.checkMu.Lock()
	defer m.checkMu.Unlock()
	if m.checkFailed == nil {
		m.checkFailed = make(map[string]string)
	}
	for _, name := range m.PoolNames() {
		err := m.pools[name].Check(ctx)
		if errors.Is(err, pool.ErrSizesNotEnforced) {
			err = nil
		}
		was, failed := m.checkFailed[name]
		switch {
		case err != nil && err.Error() != was:
			logger.Error(err, "Pool check failed", "pool", name)
			m.checkFailed[name] = err.Error()
		case err == nil && failed:
			logger.Info("Pool check passes again", "pool", name)
			delete(m.checkFailed, name)
		}
	}
}

// PoolNames lists the configured pools, sorted.
func (m *Manager) PoolNames() []string {
	names := make([]string, 0, len(m.pools))
	for n := range m.pools {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Roots returns the root directory of every pool, sorted by pool name.
// Nothing but the driver may mount on, in or over them.
func (m *Manager) Roots() []string {
	roots := make([]string, 0, len(m.pools))
	for _, name := range m.PoolNames() {
		roots = append(roots, m.pools[name].Root())
	}
	return roots
}

// DefaultPool names the pool used when a request names none.
func (m *Manager) DefaultPool() string { return m.defaultPool }

// Orphans returns the directories found at the last recovery that no record
// owns.
func (m *Manager) Orphans() []Orphan {
	m.orphansMu.Lock()
	defer m.orphansMu.Unlock()
	return append([]Orphan(nil), m.orphans...)
}

// CatalogProblems returns the catalog entries the last recovery could not
// understand: record files that cannot be read or decoded (their volumes
// are neither served nor deleted, their IDs never reused) and stray
// entries. They are left in place for an operator.
func (m *Manager) CatalogProblems() []catalog.Problem { return m.cat.Problems() }

// poolCheckInterval is how often Run checks the pools. A check is one
// tree search per btrfs pool, so a short interval costs nothing, and a
// pool that lost its limits says so within seconds.
const poolCheckInterval = 10 * time.Second

// Run refreshes the usage of every volume every interval until ctx ends, so
// that capacity reflects data actually written, and checks the pools every
// poolCheckInterval. It returns nil when ctx ends.
func (m *Manager) Run(ctx context.Context, interval time.Duration) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		t := time.NewTicker(poolCheckInterval)
		defer t.Stop()
		for {
			m.CheckPools(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	logger := klog.FromContext(ctx)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, v := range m.List() {
			if ctx.Err() != nil {
				return nil
			}
			if _, err := m.Usage(v); err != nil {
				logger.V(4).Info("Cannot measure volume", "volumeID", v.ID, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
