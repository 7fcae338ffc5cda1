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
}

// Create makes a volume or, when one with the same name and compatible
// properties exists, returns it. The sequence is: record "creating", make the
// directory, record "ready". Recovery removes anything left "creating".
func (m *Manager) Create(ctx context.Context, req CreateRequest) (Volume, error) {
	if !m.Ready() {
		return Volume{}, ErrNotReady
	}
	logger := klog.FromContext(ctx)
	if req.Pool == "" {
		req.Pool = m.defaultPool
	}
	if existing, err := m.cat.GetByName(req.Name); err == nil {
		return m.sameVolume(existing, req)
	} else if !errors.Is(err, catalog.ErrNotFound) {
		return Volume{}, err
	}
	p, ok := m.pools[req.Pool]
	if !ok {
		return Volume{}, fmt.Errorf("pool %.64q is not configured on this node (pools: %v): %w", req.Pool, m.PoolNames(), ErrUnknownPool)
	}
	size := m.sizeFor(req)
	fs, err := p.Stat()
	if err != nil {
		return Volume{}, err
	}
	v := Volume{
		ID:            newID(),
		Name:          req.Name,
		Pool:          req.Pool,
		CapacityBytes: size,
		Parameters:    maps.Clone(req.Parameters),
		OnDelete:      string(req.OnDelete),
		PVCNamespace:  req.PVCNamespace,
		PVCName:       req.PVCName,
		PVName:        req.PVName,
		CreatedAt:     m.now().UTC(),
		State:         catalog.StateCreating,
	}
	if err := m.ledger.reserve(v.ID, v.Pool, size, fs.AvailableBytes); err != nil {
		return Volume{}, err
	}
	if err := m.cat.Put(v); err != nil {
		m.ledger.remove(v.ID)
		if errors.Is(err, catalog.ErrNameTaken) {
			return Volume{}, fmt.Errorf("volume %q is being created by another request: %w", req.Name, ErrBusy)
		}
		return Volume{}, err
	}
	if err := p.Create(v.ID, pool.VolumeSpec{Bytes: size, Perm: req.Permissions}); err != nil {
		return Volume{}, m.rollbackCreate(ctx, p, v, err)
	}
	v.State = catalog.StateReady
	if err := m.cat.Put(v); err != nil {
		return Volume{}, m.rollbackCreate(ctx, p, v, err)
	}
	path, _ := p.Path(v.ID)
	logger.V(2).Info("Volume created", "volumeID", v.ID, "name", v.Name, "pool", v.Pool,
		"capacityBytes", v.CapacityBytes, "onDelete", v.OnDelete, "path", path)
	return v, nil
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
	case v.Pool != req.Pool:
		return Volume{}, fmt.Errorf("volume %q exists in pool %q, not %q: %w", v.Name, v.Pool, req.Pool, ErrConflict)
	case !maps.Equal(v.Parameters, req.Parameters): // nil and empty compare equal
		return Volume{}, fmt.Errorf("volume %q exists with parameters %v, not %v: %w", v.Name, v.Parameters, req.Parameters, ErrConflict)
	}
	return v, nil
}

// rollbackCreate undoes a create that failed after its intent was recorded.
// If the rollback itself fails, the "creating" record stays and the next
// start finishes the job.
func (m *Manager) rollbackCreate(ctx context.Context, p pool.Pool, v Volume, cause error) error {
	logger := klog.FromContext(ctx)
	if err := p.Remove(v.ID); err != nil {
		logger.Error(err, "Cannot roll back a failed create; recovery will retry", "volumeID", v.ID)
		return cause
	}
	if err := m.cat.Delete(v.ID); err != nil {
		logger.Error(err, "Cannot remove the record of a failed create; recovery will retry", "volumeID", v.ID)
		return cause
	}
	m.ledger.remove(v.ID)
	return cause
}
