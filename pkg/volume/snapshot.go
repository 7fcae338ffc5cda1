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

// Snapshot is a snapshot's record as the catalog holds it.
type Snapshot = catalog.Snapshot

// SnapshotRequest is a validated CreateSnapshot.
type SnapshotRequest struct {
	// Name is the CO's name for the snapshot; taking the same name of the
	// same volume twice returns the same snapshot.
	Name string
	// SourceVolumeID is the volume to take the snapshot of.
	SourceVolumeID string
	// Parameters are kept in the record.
	Parameters map[string]string
}

// CreateSnapshot takes a snapshot of a volume or, when one with the same
// name exists of the same volume, returns it. The sequence is: record
// "creating", copy or snapshot the volume in its pool, record "ready".
// Recovery removes anything left "creating". The snapshot is independent of
// its source afterwards: the source can be written to, expanded or deleted.
// Callers serialise calls per name and per source volume.
func (m *Manager) CreateSnapshot(ctx context.Context, req SnapshotRequest) (Snapshot, error) {
	if !m.Ready() {
		return Snapshot{}, ErrNotReady
	}
	if existing, err := m.cat.GetSnapshotByName(req.Name); err == nil && existing.State != catalog.StateCreating {
		return sameSnapshot(existing, req)
	} else if err == nil {
		// Left "creating" by a failed snapshot whose rollback failed too:
		// never returned, so rolled back now and the name taken anew.
		if err := m.rollbackStaleSnapshot(ctx, existing); err != nil {
			return Snapshot{}, err
		}
	} else if !errors.Is(err, catalog.ErrNotFound) {
		return Snapshot{}, err
	}
	src, err := m.Get(req.SourceVolumeID)
	if err != nil {
		return Snapshot{}, err
	}
	p, ok := m.pools[src.Pool]
	if !ok {
		return Snapshot{}, poolGone("volume "+src.ID, src.Pool)
	}
	s := Snapshot{
		ID:             newSnapshotID(),
		Name:           req.Name,
		SourceVolumeID: src.ID,
		Pool:           src.Pool,
		SizeBytes:      src.CapacityBytes,
		Block:          src.Block,
		CreatedAt:      m.now().UTC(),
		State:          catalog.StateCreating,
		Parameters:     maps.Clone(req.Parameters),
	}
	m.creating.TryLock(s.ID) // a fresh ID: always free
	defer m.creating.Unlock(s.ID)
	if err := m.cat.PutSnapshot(s); err != nil {
		if errors.Is(err, catalog.ErrNameTaken) {
			return Snapshot{}, fmt.Errorf("snapshot %q is being created by another request: %w", req.Name, ErrBusy)
		}
		return Snapshot{}, err
	}
	if err := p.Snapshot(src.ID, s.ID); err != nil {
		return Snapshot{}, m.rollbackSnapshot(ctx, p, s, fmt.Errorf("snapshot volume %s in pool %q: %w", src.ID, src.Pool, poolErr(err)))
	}
	s.State = catalog.StateReady
	if err := m.cat.PutSnapshot(s); err != nil {
		return Snapshot{}, m.rollbackSnapshot(ctx, p, s, err)
	}
	klog.FromContext(ctx).V(2).Info("Snapshot created", "snapshotID", s.ID, "name", s.Name,
		"sourceVolumeID", s.SourceVolumeID, "pool", s.Pool, "sizeBytes", s.SizeBytes, "block", s.Block)
	return s, nil
}

// sameSnapshot answers a CreateSnapshot whose name already exists. Only the
// source matters (CSI: ALREADY_EXISTS when the name is taken by a snapshot
// of another volume); the source may have been deleted since.
func sameSnapshot(s Snapshot, req SnapshotRequest) (Snapshot, error) {
	switch {
	case s.SourceVolumeID != req.SourceVolumeID:
		return Snapshot{}, fmt.Errorf("snapshot %q exists of volume %s, not of %.64q: %w",
			s.Name, s.SourceVolumeID, req.SourceVolumeID, ErrConflict)
	case s.State != catalog.StateReady:
		return Snapshot{}, fmt.Errorf("snapshot %q (%s) is %s: %w", s.Name, s.ID, s.State, ErrBusy)
	}
	return s, nil
}

// rollbackStaleSnapshot is rollbackStale for snapshots.
func (m *Manager) rollbackStaleSnapshot(ctx context.Context, s Snapshot) error {
	if !m.creating.TryLock(s.ID) {
		return fmt.Errorf("snapshot %q (%s) is being created by another request: %w", s.Name, s.ID, ErrBusy)
	}
	defer m.creating.Unlock(s.ID)
	p, ok := m.pools[s.Pool]
	if !ok {
		return fmt.Errorf("snapshot %q (%s) was left half-made: %w", s.Name, s.ID, poolGone("it", s.Pool))
	}
	if err := m.removeSnapshot(p, s); err != nil {
		return fmt.Errorf("snapshot %q: an earlier attempt failed and what it left cannot be removed yet; retry once pool %q accepts writes: %w",
			s.Name, s.Pool, poolErr(err))
	}
	klog.FromContext(ctx).Info("Rolled back an earlier failed snapshot before trying again", "snapshotID", s.ID, "name", s.Name)
	return nil
}

// rollbackSnapshot undoes a snapshot that failed after its intent was
// recorded. If the rollback itself fails, the "creating" record stays: a
// retry of the same name (rollbackStaleSnapshot) or the next start
// finishes the job.
func (m *Manager) rollbackSnapshot(ctx context.Context, p pool.Pool, s Snapshot, cause error) error {
	logger := klog.FromContext(ctx)
	if err := p.RemoveSnapshot(s.ID); err != nil {
		logger.Error(err, "Cannot roll back a failed snapshot; a retry of the same name or the next start finishes it", "snapshotID", s.ID)
		return cause
	}
	if err := m.cat.DeleteSnapshot(s.ID); err != nil {
		logger.Error(err, "Cannot remove the record of a failed snapshot; a retry of the same name or the next start finishes it", "snapshotID", s.ID)
	}
	return cause
}

// DeleteSnapshot removes a snapshot. The sequence is: record "deleting",
// remove the snapshot's directory, remove the record; recovery finishes
// anything left "deleting". Volumes restored from the snapshot are
// independent of it and stay. An unknown or malformed ID is
// ErrSnapshotNotFound, which the caller may treat as done.
func (m *Manager) DeleteSnapshot(ctx context.Context, id string) error {
	if !ValidSnapshotID(id) {
		return fmt.Errorf("%.64q is not a snapshot ID issued by this driver: %w", id, ErrSnapshotNotFound)
	}
	if !m.Ready() {
		return ErrNotReady
	}
	s, err := m.cat.GetSnapshot(id)
	if errors.Is(err, catalog.ErrNotFound) {
		return fmt.Errorf("snapshot %s: %w", id, ErrSnapshotNotFound)
	}
	if err != nil {
		return err
	}
	if s.State == catalog.StateCreating {
		return fmt.Errorf("snapshot %s is still being created: %w", id, ErrBusy)
	}
	p, ok := m.pools[s.Pool]
	if !ok {
		// Checked before recording the intent, so the snapshot stays as it
		// was until the pool is configured again.
		return poolGone("snapshot "+s.ID, s.Pool)
	}
	if s.State != catalog.StateDeleting {
		s.State = catalog.StateDeleting
		if err := m.cat.PutSnapshot(s); err != nil {
			return err
		}
	}
	if err := m.removeSnapshot(p, s); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Snapshot deleted", "snapshotID", s.ID, "name", s.Name, "pool", s.Pool)
	return nil
}

// removeSnapshot removes a snapshot's directory and then its record. Both
// steps are idempotent, so recovery can call it again.
func (m *Manager) removeSnapshot(p pool.Pool, s Snapshot) error {
	if err := p.RemoveSnapshot(s.ID); err != nil {
		return fmt.Errorf("remove snapshot %s from pool %q: %w", s.ID, s.Pool, err)
	}
	return m.cat.DeleteSnapshot(s.ID)
}

// GetSnapshot returns the ready snapshot with the given ID. IDs of a shape
// this driver never issues are ErrSnapshotNotFound without any lookup.
func (m *Manager) GetSnapshot(id string) (Snapshot, error) {
	if !ValidSnapshotID(id) {
		return Snapshot{}, fmt.Errorf("%.64q is not a snapshot ID issued by this driver: %w", id, ErrSnapshotNotFound)
	}
	if !m.Ready() {
		return Snapshot{}, ErrNotReady
	}
	s, err := m.cat.GetSnapshot(id)
	// A snapshot being created was never returned; one being deleted is on
	// its way out: neither may be restored or listed.
	if errors.Is(err, catalog.ErrNotFound) || (err == nil && s.State != catalog.StateReady) {
		return Snapshot{}, fmt.Errorf("snapshot %s: %w", id, ErrSnapshotNotFound)
	}
	return s, err
}

// ListSnapshots returns every snapshot that CreateSnapshot has returned and
// DeleteSnapshot has not yet begun to remove, sorted by ID.
func (m *Manager) ListSnapshots() []Snapshot {
	all := m.cat.ListSnapshots()
	out := all[:0]
	for _, s := range all {
		if s.State == catalog.StateReady {
			out = append(out, s)
		}
	}
	return out
}
