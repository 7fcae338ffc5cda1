package volume

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"k8s.io/klog/v2"
)

// OnDelete is a volume's reclaim policy inside the driver.
type OnDelete string

const (
	// OnDeleteDelete removes the directory and everything in it.
	OnDeleteDelete OnDelete = "delete"
	// OnDeleteRetain leaves the directory with a note saying which PV it was.
	OnDeleteRetain OnDelete = "retain"
	// OnDeleteArchive moves the directory under the pool's archive/.
	OnDeleteArchive OnDelete = "archive"
)

// CreateRequest is a validated CreateVolume.
type CreateRequest struct {
	// Name is the CO's name for the volume; creating the same name twice
	// with the same request returns the same volume.
	Name string
	// Pool names the pool; empty means the default pool.
	Pool string
	// RequiredBytes and LimitBytes are the CSI capacity range (0 = unset).
	RequiredBytes, LimitBytes int64
	OnDelete                  OnDelete
	Permissions               pool.Permissions
	// Parameters are kept in the record and compared on retries.
	Parameters map[string]string
	// PVCNamespace, PVCName, PVName come from --extra-create-metadata.
	PVCNamespace, PVCName, PVName string
	// Block makes a block volume: a sparse file the node attaches to a
	// loop device, instead of a directory it bind-mounts.
	Block bool
	// SourceSnapshotID or SourceVolumeID (at most one) names what the new
	// volume's content comes from: a restore or a clone. The source must be
	// in this node's catalog; the new volume is made in the source's pool.
	SourceSnapshotID, SourceVolumeID string
}

func (r CreateRequest) sourced() bool { return r.SourceSnapshotID != "" || r.SourceVolumeID != "" }

// Create makes a volume or, when one with the same name and compatible
// properties exists, returns it. The sequence is: record "creating", make the
// directory (empty, or with the content of its source), record "ready".
// Recovery removes anything left "creating".
func (m *Manager) Create(ctx context.Context, req CreateRequest) (Volume, error) {
	if !m.Ready() {
		return Volume{}, ErrNotReady
	}
	logger := klog.FromContext(ctx)
	if req.Pool == "" && !req.sourced() {
		req.Pool = m.defaultPool
	}
	// A retry is answered from the record alone, so that it succeeds even
	// when the source has been deleted since the first call.
	if existing, err := m.cat.GetByName(req.Name); err == nil && existing.State != catalog.StateCreating {
		return m.sameVolume(existing, req)
	} else if err == nil {
		// Left "creating" by a create that failed and could not roll
		// back (say, on a pool that was read-only for a while): never
		// returned, so it is rolled back now and the name made anew.
		if err := m.rollbackStale(ctx, existing); err != nil {
			return Volume{}, err
		}
	} else if !errors.Is(err, catalog.ErrNotFound) {
		return Volume{}, err
	}
	size := m.sizeFor(req)
	if req.sourced() {
		src, err := m.source(req)
		if err != nil {
			return Volume{}, err
		}
		req.Pool = src.pool
		// A restore or clone is at least as large as its source, which
		// source has checked against the requested range.
		size = max(req.RequiredBytes, src.bytes)
	}
	p, ok := m.pools[req.Pool]
	if !ok {
		return Volume{}, fmt.Errorf("pool %.64q is not configured on this node (pools: %v): %w", req.Pool, m.PoolNames(), ErrUnknownPool)
	}
	fs, err := p.Stat()
	if err != nil {
		return Volume{}, err
	}
	v := Volume{
		ID:               newID(),
		Name:             req.Name,
		Pool:             req.Pool,
		CapacityBytes:    size,
		Parameters:       maps.Clone(req.Parameters),
		OnDelete:         string(req.OnDelete),
		PVCNamespace:     req.PVCNamespace,
		PVCName:          req.PVCName,
		PVName:           req.PVName,
		CreatedAt:        m.now().UTC(),
		State:            catalog.StateCreating,
		Block:            req.Block,
		SourceSnapshotID: req.SourceSnapshotID,
		SourceVolumeID:   req.SourceVolumeID,
	}
	if err := m.ledger.reserve(v.ID, v.Pool, size, fs.AvailableBytes); err != nil {
		return Volume{}, err
	}
	// Marks the record in flight until this call returns: a concurrent
	// create of the name answers ErrBusy instead of rolling it back.
	m.creating.TryLock(v.ID) // a fresh ID: always free
	defer m.creating.Unlock(v.ID)
	if err := m.cat.Put(v); err != nil {
		m.ledger.remove(v.ID)
		if errors.Is(err, catalog.ErrNameTaken) {
			return Volume{}, fmt.Errorf("volume %q is being created by another request: %w", req.Name, ErrBusy)
		}
		return Volume{}, err
	}
	spec := pool.VolumeSpec{Bytes: size, Block: req.Block, Perm: req.Permissions,
		FromSnapshot: req.SourceSnapshotID, FromVolume: req.SourceVolumeID}
	if err := p.Create(v.ID, spec); err != nil {
		return Volume{}, m.rollbackCreate(ctx, p, v, fmt.Errorf("make volume %s in pool %q: %w", v.ID, v.Pool, poolErr(err)))
	}
	// Before the record says ready, so that a volume CreateVolume returned
	// has its entry; a crash from here on leaves an entry recovery removes
	// with the unfinished volume.
	linkView(ctx, p, v)
	v.State = catalog.StateReady
	if err := m.cat.Put(v); err != nil {
		return Volume{}, m.rollbackCreate(ctx, p, v, err)
	}
	path, _ := p.Path(v.ID)
	logger.V(2).Info("Volume created", "volumeID", v.ID, "name", v.Name, "pool", v.Pool,
		"capacityBytes", v.CapacityBytes, "onDelete", v.OnDelete, "block", v.Block,
		"sourceSnapshotID", v.SourceSnapshotID, "sourceVolumeID", v.SourceVolumeID, "path", path)
	return v, nil
}

// source is what a restore or clone starts from.
type source struct {
	pool  string
	bytes int64
}

// source finds the snapshot or volume a request names and checks that the
// request fits it: same pool, same access type, at least as large.
func (m *Manager) source(req CreateRequest) (source, error) {
	var (
		what  string
		src   source
		block bool
	)
	switch {
	case req.SourceSnapshotID != "" && req.SourceVolumeID != "":
		return source{}, fmt.Errorf("a volume is made from a snapshot or from a volume, not both: %w", ErrSourceMismatch)
	case req.SourceSnapshotID != "":
		s, err := m.GetSnapshot(req.SourceSnapshotID)
		if errors.Is(err, ErrSnapshotNotFound) {
			return source{}, fmt.Errorf("source snapshot %.64q: %w", req.SourceSnapshotID, ErrSourceNotFound)
		}
		if err != nil {
			return source{}, err
		}
		what, src, block = "snapshot "+s.ID, source{pool: s.Pool, bytes: s.SizeBytes}, s.Block
	default:
		v, err := m.Get(req.SourceVolumeID)
		if errors.Is(err, ErrNotFound) {
			return source{}, fmt.Errorf("source volume %.64q: %w", req.SourceVolumeID, ErrSourceNotFound)
		}
		if err != nil {
			return source{}, err
		}
		what, src, block = "volume "+v.ID, source{pool: v.Pool, bytes: v.CapacityBytes}, v.Block
	}
	kind := map[bool]string{false: "filesystem", true: "block"}
	switch {
	case req.Pool != "" && req.Pool != src.pool:
		return source{}, fmt.Errorf("pool %.64q: a volume made from %s is made in the source's pool %q; leave the pool parameter unset or set it to %q: %w",
			req.Pool, what, src.pool, src.pool, ErrSourceMismatch)
	case req.Block != block:
		return source{}, fmt.Errorf("%s is a %s volume and a %s volume cannot be made from it; request volume mode %s: %w",
			what, kind[block], kind[req.Block], kind[block], ErrSourceMismatch)
	case req.RequiredBytes > 0 && req.RequiredBytes < src.bytes:
		return source{}, fmt.Errorf("capacity_range.required_bytes %s is smaller than %s (%s); request at least its size: %w",
			human(req.RequiredBytes), what, human(src.bytes), ErrOutOfRange)
	case req.LimitBytes > 0 && req.LimitBytes < src.bytes:
		return source{}, fmt.Errorf("capacity_range.limit_bytes %s is smaller than %s (%s); allow at least its size: %w",
			human(req.LimitBytes), what, human(src.bytes), ErrOutOfRange)
	}
	return src, nil
}

// sizeFor picks the size of a new volume: the required size, else the
// default clamped to the limit.
func (m *Manager) sizeFor(req CreateRequest) int64 {
	if req.RequiredBytes > 0 {
		return req.RequiredBytes
	}
	if req.LimitBytes > 0 && req.LimitBytes < m.defaultCapacity {
		return req.LimitBytes
	}
	return m.defaultCapacity
}

// sameVolume answers a create whose name already exists.
func (m *Manager) sameVolume(v Volume, req CreateRequest) (Volume, error) {
	if v.State != catalog.StateReady {
		return Volume{}, fmt.Errorf("volume %q (%s) is %s: %w", v.Name, v.ID, v.State, ErrBusy)
	}
	switch {
	case req.RequiredBytes > 0 && v.CapacityBytes < req.RequiredBytes:
		return Volume{}, fmt.Errorf("volume %q exists with %s, smaller than the required %s: %w",
			v.Name, human(v.CapacityBytes), human(req.RequiredBytes), ErrConflict)
	case req.LimitBytes > 0 && v.CapacityBytes > req.LimitBytes:
		return Volume{}, fmt.Errorf("volume %q exists with %s, larger than the limit %s: %w",
			v.Name, human(v.CapacityBytes), human(req.LimitBytes), ErrConflict)
	case req.Pool != "" && v.Pool != req.Pool:
		return Volume{}, fmt.Errorf("volume %q exists in pool %q, not %q: %w", v.Name, v.Pool, req.Pool, ErrConflict)
	case v.Block != req.Block:
		return Volume{}, fmt.Errorf("volume %q exists with block=%v, not %v: %w", v.Name, v.Block, req.Block, ErrConflict)
	case v.SourceSnapshotID != req.SourceSnapshotID || v.SourceVolumeID != req.SourceVolumeID:
		return Volume{}, fmt.Errorf("volume %q exists with content source %s, not %s: %w",
			v.Name, describeSource(v.SourceSnapshotID, v.SourceVolumeID), describeSource(req.SourceSnapshotID, req.SourceVolumeID), ErrConflict)
	case !maps.Equal(v.Parameters, req.Parameters): // nil and empty compare equal
		return Volume{}, fmt.Errorf("volume %q exists with parameters %v, not %v: %w", v.Name, v.Parameters, req.Parameters, ErrConflict)
	}
	return v, nil
}

func describeSource(snapshotID, volumeID string) string {
	switch {
	case snapshotID != "":
		return fmt.Sprintf("snapshot %.64q", snapshotID)
	case volumeID != "":
		return fmt.Sprintf("volume %.64q", volumeID)
	}
	return "none"
}

// rollbackStale rolls back a volume left "creating" by a failed create of
// this process whose own rollback failed. It answers ErrBusy when the create
// is still in flight, and the rollback's error, which says what to fix, when
// the pool still refuses.
func (m *Manager) rollbackStale(ctx context.Context, v Volume) error {
	if !m.creating.TryLock(v.ID) {
		return fmt.Errorf("volume %q (%s) is being created by another request: %w", v.Name, v.ID, ErrBusy)
	}
	defer m.creating.Unlock(v.ID)
	p, ok := m.pools[v.Pool]
	if !ok {
		return fmt.Errorf("volume %q (%s) was left half-made: %w", v.Name, v.ID, poolGone("it", v.Pool))
	}
	if err := m.rollbackUnfinished(ctx, p, v); err != nil {
		return fmt.Errorf("volume %q: an earlier attempt failed and what it left cannot be removed yet; retry once pool %q accepts writes: %w",
			v.Name, v.Pool, poolErr(err))
	}
	klog.FromContext(ctx).Info("Rolled back an earlier failed create before trying again", "volumeID", v.ID, "name", v.Name)
	return nil
}

// rollbackCreate undoes a create that failed after its intent was recorded.
// If the rollback itself fails, the "creating" record stays: a retry of the
// same name (rollbackStale) or the next start finishes the job.
func (m *Manager) rollbackCreate(ctx context.Context, p pool.Pool, v Volume, cause error) error {
	logger := klog.FromContext(ctx)
	unlinkView(ctx, p, v)
	if err := p.Remove(v.ID); err != nil {
		logger.Error(err, "Cannot roll back a failed create; a retry of the same name or the next start finishes it", "volumeID", v.ID)
		return cause
	}
	if err := m.cat.Delete(v.ID); err != nil {
		logger.Error(err, "Cannot remove the record of a failed create; a retry of the same name or the next start finishes it", "volumeID", v.ID)
		return cause
	}
	m.ledger.remove(v.ID)
	return cause
}
