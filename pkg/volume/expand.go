package volume

import (
	"context"
	"errors"
	"fmt"

	"github.com/dirvol/dirvol/pkg/catalog"
	"k8s.io/klog/v2"
)

// Expand grows volume id to requiredBytes, refusing to go past limitBytes
// when that is set (0 = no limit). A volume already at least requiredBytes
// large is returned unchanged, so retries and a NodeExpandVolume after a
// ControllerExpandVolume are no-ops; a limit below the current size is
// ErrOutOfRange, since volumes never shrink. The growth is reserved in the
// pool's ledger first (ErrNoSpace with the figures when the pool cannot
// promise it), then the pool raises the volume's limit (and a block
// volume's file), then the record is updated.
//
// Expand is called by both the controller and the node service, which hold
// their own locks, so it takes a per-volume try-lock of its own: a second
// Expand of the same volume while one is running is ErrBusy.
func (m *Manager) Expand(ctx context.Context, id string, requiredBytes, limitBytes int64) (Volume, error) {
	if !ValidID(id) {
		return Volume{}, fmt.Errorf("%.64q is not a volume ID issued by this driver: %w", id, ErrNotFound)
	}
	if !m.Ready() {
		return Volume{}, ErrNotReady
	}
	if !m.expanding.TryLock(id) {
		return Volume{}, fmt.Errorf("volume %s is already being expanded: %w", id, ErrBusy)
	}
	defer m.expanding.Unlock(id)

	v, err := m.cat.Get(id)
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return Volume{}, fmt.Errorf("volume %s: %w", id, ErrNotFound)
	case err != nil:
		return Volume{}, err
	case v.State == catalog.StateCreating:
		return Volume{}, fmt.Errorf("volume %s is still being created: %w", id, ErrBusy)
	case v.State != catalog.StateReady:
		return Volume{}, fmt.Errorf("volume %s is being deleted: %w", id, ErrNotFound)
	}
	p, ok := m.pools[v.Pool]
	if !ok {
		return Volume{}, poolGone("volume "+v.ID, v.Pool)
	}
	if limitBytes > 0 && limitBytes < v.CapacityBytes {
		return Volume{}, fmt.Errorf("capacity_range.limit_bytes %s is below the current size %s of volume %s; volumes cannot shrink: %w",
			human(limitBytes), human(v.CapacityBytes), v.ID, ErrOutOfRange)
	}
	if requiredBytes <= v.CapacityBytes {
		return v, nil
	}
	fs, err := p.Stat()
	if err != nil {
		return Volume{}, err
	}
	old := v.CapacityBytes
	if err := m.ledger.grow(v.ID, v.Pool, requiredBytes, fs.AvailableBytes); err != nil {
		return Volume{}, fmt.Errorf("grow volume %s from %s to %s: %w", v.ID, human(old), human(requiredBytes), err)
	}
	// The pool's limit is raised before the record: a crash in between
	// leaves a volume whose enforced limit (or block file) is larger than
	// its record says. That is harmless (the volume can hold a little more
	// than it was promised until then) and the CO's retry of the expansion
	// finds the record still small, raises the limit again (a no-op) and
	// records the new size. The other order could record a size the pool
	// never enforced.
	if err := p.Expand(v.ID, requiredBytes); err != nil {
		m.ledger.setCapacity(v.ID, old)
		return Volume{}, fmt.Errorf("expand volume %s in pool %q to %s: %w", v.ID, v.Pool, human(requiredBytes), poolErr(err))
	}
	v.CapacityBytes = requiredBytes
	if err := m.cat.Put(v); err != nil {
		m.ledger.setCapacity(v.ID, old)
		return Volume{}, err
	}
	klog.FromContext(ctx).V(2).Info("Volume expanded", "volumeID", v.ID, "name", v.Name, "pool", v.Pool,
		"fromBytes", old, "capacityBytes", v.CapacityBytes, "block", v.Block)
	return v, nil
}

// Holds reports whether this node's catalog has a record of volume id, in
// any state. A controller reached for a volume it does not hold leaves the
// volume to the node that does.
func (m *Manager) Holds(id string) (bool, error) {
	if !m.Ready() {
		return false, ErrNotReady
	}
	if !ValidID(id) {
		return false, nil
	}
	_, err := m.cat.Get(id)
	if errors.Is(err, catalog.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// BlockPath returns the file that holds block volume v's bytes.
func (m *Manager) BlockPath(v Volume) (string, error) {
	p, ok := m.pools[v.Pool]
	if !ok {
		return "", poolGone("volume "+v.ID, v.Pool)
	}
	return p.BlockPath(v.ID)
}
