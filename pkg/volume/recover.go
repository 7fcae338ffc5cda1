package volume

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"k8s.io/klog/v2"
)

// Recover reads the catalog from disk, brings the disk and the catalog back
// in line after a stop or a crash, then marks the manager ready:
//   - a volume left "creating" was never returned to the CO: its directory
//     and record are removed;
//   - a volume left "deleting" has its reclaim policy finished;
//   - removals interrupted in a pool's trash are finished;
//   - a snapshot left "creating" was never returned: its directory and
//     record are removed; one left "deleting" has its removal finished;
//   - a directory under volumes/ or snapshots/ that no record owns is
//     reported as an orphan (log and Orphans), never deleted;
//   - each pool's claim view is made to match the catalog (repairView).
func (m *Manager) Recover(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	problems, err := m.cat.Load()
	if err != nil {
		return fmt.Errorf("load volume catalog: %w", err)
	}
	// Before anything is served, so that no RPC writes a record meanwhile.
	if n, err := m.cat.Pad(); err != nil {
		logger.Error(err, "Cannot give every catalog record the room to record a delete in place; on a full filesystem, deleting those volumes fails until there is space; retried at next start",
			"padded", n)
	} else if n > 0 {
		logger.Info("Rewrote catalog records of an earlier version with room to record a delete in place on a full filesystem", "records", n)
	}
	owned := make(map[string]map[string]bool, len(m.pools))
	for name := range m.pools {
		owned[name] = make(map[string]bool)
	}
	for _, p := range problems {
		logger.Error(p.Err, "Catalog entry cannot be understood; it is left in place for an operator, and a record's volume is neither served nor deleted and its ID not reused", "file", p.File)
		// The record's pool is unknown: its ID's directory in any pool is
		// reported with the record, not again as an orphan.
		for name := range m.pools {
			if p.ID != "" {
				owned[name][p.ID] = true
			}
		}
	}
	var ready, rolledBack, finished, stuck int
	for _, v := range m.cat.List() {
		if owned[v.Pool] != nil {
			owned[v.Pool][v.ID] = true
		}
		p, poolKnown := m.pools[v.Pool]
		if !poolKnown {
			// Never guess about data in a pool this start was not told
			// about: keep the record as it is and say so.
			logger.Error(nil, "Volume is in a pool that is not configured; its record is kept untouched and it is listed as abnormal",
				"volumeID", v.ID, "pool", v.Pool, "state", v.State)
			if v.State == catalog.StateReady {
				ready++
			}
			continue
		}
		switch v.State {
		case catalog.StateCreating:
			if err := m.rollbackUnfinished(ctx, p, v); err != nil {
				// One stuck volume must not keep the whole node from
				// serving: the record stays "creating", so the volume is
				// not listed and the next start tries again.
				logger.Error(err, "Cannot roll back an interrupted create; will retry at next start", "volumeID", v.ID)
				stuck++
				continue
			}
			delete(owned[v.Pool], v.ID)
			rolledBack++
			logger.Info("Rolled back a create interrupted by a stop", "volumeID", v.ID, "name", v.Name)
		case catalog.StateDeleting:
			if err := m.finishDelete(ctx, v); err != nil {
				logger.Error(err, "Cannot finish an interrupted delete; will retry at next start or on the next DeleteVolume", "volumeID", v.ID)
				stuck++
				continue
			}
			delete(owned[v.Pool], v.ID)
			finished++
			logger.Info("Finished a delete interrupted by a stop", "volumeID", v.ID, "name", v.Name, "onDelete", v.OnDelete)
		default:
			m.ledger.add(v.ID, v.Pool, v.CapacityBytes)
			ready++
		}
	}
	snaps := m.recoverSnapshots(ctx)
	var orphans []Orphan
	var view viewRepair
	for _, name := range m.PoolNames() {
		p := m.pools[name]
		r := m.repairView(ctx, p)
		view.kept, view.added, view.removed, view.blocked = view.kept+r.kept, view.added+r.added, view.removed+r.removed, view.blocked+r.blocked
		if err := p.PurgeTrash(); err != nil {
			logger.Error(err, "Cannot finish removals left in the pool's trash", "pool", name)
		}
		dirs, retained, err := p.Scan()
		if err != nil {
			logger.Error(err, "Cannot scan pool for directories without a record", "pool", name)
			continue
		}
		isRetained := make(map[string]bool, len(retained))
		for _, id := range retained {
			isRetained[id] = true
		}
		for _, dir := range dirs {
			if owned[name][dir] || isRetained[dir] {
				continue
			}
			path, _ := p.Path(dir)
			orphans = append(orphans, Orphan{Pool: name, Path: path})
			logger.Info("Directory in pool has no volume record; left untouched for an operator",
				"pool", name, "path", path)
		}
		orphans = append(orphans, snapshotOrphans(logger, p, snaps.owned[name], owned[name])...)
	}
	m.orphansMu.Lock()
	m.orphans = orphans
	m.orphansMu.Unlock()
	m.ready.Store(true)
	logger.Info("Volume catalog recovered", "volumes", ready, "catalogProblems", len(problems), "rolledBackCreates", rolledBack,
		"finishedDeletes", finished, "stuckOperations", stuck+snaps.stuck, "orphanDirectories", len(orphans),
		"snapshots", snaps.ready, "rolledBackSnapshots", snaps.rolledBack, "finishedSnapshotDeletes", snaps.finished,
		"claimViewEntries", view.kept+view.added, "claimViewAdded", view.added, "claimViewRemoved", view.removed, "claimViewBlocked", view.blocked)
	return nil
}

// rollbackUnfinished removes a volume that was never returned to the CO.
func (m *Manager) rollbackUnfinished(ctx context.Context, p pool.Pool, v Volume) error {
	unlinkView(ctx, p, v)
	if err := p.Remove(v.ID); err != nil {
		return fmt.Errorf("roll back unfinished create of %s: %w", v.ID, err)
	}
	if err := m.cat.Delete(v.ID); err != nil {
		return err
	}
	m.ledger.remove(v.ID)
	return nil
}

// snapshotRecovery is what recoverSnapshots did.
type snapshotRecovery struct {
	// owned holds, per pool, the snapshot IDs that have a record.
	owned                              map[string]map[string]bool
	ready, rolledBack, finished, stuck int
}

// recoverSnapshots rolls back snapshots left "creating" and finishes those
// left "deleting". A snapshot in a pool that is not configured keeps its
// record untouched.
func (m *Manager) recoverSnapshots(ctx context.Context) snapshotRecovery {
	logger := klog.FromContext(ctx)
	r := snapshotRecovery{owned: make(map[string]map[string]bool, len(m.pools))}
	for name := range m.pools {
		r.owned[name] = make(map[string]bool)
	}
	for _, s := range m.cat.ListSnapshots() {
		p, poolKnown := m.pools[s.Pool]
		if !poolKnown {
			logger.Error(nil, "Snapshot is in a pool that is not configured; its record is kept untouched",
				"snapshotID", s.ID, "pool", s.Pool, "state", s.State)
			if s.State == catalog.StateReady {
				r.ready++
			}
			continue
		}
		r.owned[s.Pool][s.ID] = true
		switch s.State {
		case catalog.StateCreating, catalog.StateDeleting:
			if err := m.removeSnapshot(p, s); err != nil {
				logger.Error(err, "Cannot finish an interrupted snapshot operation; will retry at next start",
					"snapshotID", s.ID, "state", s.State)
				r.stuck++
				continue
			}
			delete(r.owned[s.Pool], s.ID)
			if s.State == catalog.StateCreating {
				r.rolledBack++
				logger.Info("Rolled back a snapshot interrupted by a stop", "snapshotID", s.ID, "name", s.Name)
			} else {
				r.finished++
				logger.Info("Finished a snapshot delete interrupted by a stop", "snapshotID", s.ID, "name", s.Name)
			}
		default:
			r.ready++
		}
	}
	return r
}

// snapshotOrphans reports the snapshot directories of p that no record owns
// (in owned or alsoOwned).
func snapshotOrphans(logger klog.Logger, p pool.Pool, owned, alsoOwned map[string]bool) []Orphan {
	dirs, err := p.ScanSnapshots()
	if err != nil {
		logger.Error(err, "Cannot scan pool for snapshot directories without a record", "pool", p.Name())
		return nil
	}
	var out []Orphan
	for _, dir := range dirs {
		if owned[dir] || alsoOwned[dir] {
			continue
		}
		// The name comes from the pool's own directory listing; the path
		// is for the operator to read, nothing opens it.
		path := filepath.Join(p.Root(), "snapshots", dir)
		out = append(out, Orphan{Pool: p.Name(), Path: path, Snapshot: true})
		logger.Info("Snapshot directory in pool has no snapshot record; left untouched for an operator",
			"pool", p.Name(), "path", path)
	}
	return out
}
