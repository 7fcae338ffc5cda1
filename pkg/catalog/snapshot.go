package catalog

import "time"

// Snapshot is one snapshot's record. A snapshot is an independent copy of
// its source volume (a reflink or plain copy, or a btrfs snapshot) kept in
// the source's pool; deleting the source leaves it intact.
type Snapshot struct {
	// ID is the driver-generated snapshot ID; the record file is named
	// after it.
	ID string `json:"id"`
	// Name is the CO's snapshot name (the VolumeSnapshotContent's name in
	// Kubernetes); unique among snapshots.
	Name string `json:"name"`
	// SourceVolumeID is the volume the snapshot was taken of. The volume
	// may have been deleted since.
	SourceVolumeID string `json:"sourceVolumeID"`
	// Pool names the pool that holds the snapshot (the source's pool).
	Pool string `json:"pool"`
	// SizeBytes is the source's capacity when the snapshot was taken: the
	// smallest volume it can be restored into.
	SizeBytes int64 `json:"sizeBytes"`
	// Block is set when the source was a block volume; a restore must be a
	// block volume too.
	Block bool `json:"block,omitempty"`
	// CreatedAt is when CreateSnapshot first recorded the snapshot (UTC).
	CreatedAt time.Time `json:"createdAt"`
	// State is the lifecycle state; see State.
	State State `json:"state"`
	// Parameters are the CreateSnapshot parameters.
	Parameters map[string]string `json:"parameters,omitempty"`
}

// GetSnapshot returns the snapshot record with the given ID: ErrNotFound
// when there is none, ErrUnreadable when its file could not be read at
// Load.
func (c *Catalog) GetSnapshot(id string) (Snapshot, error) { return c.snapshots.get(id) }

// GetSnapshotByName returns the snapshot record holding the given name.
func (c *Catalog) GetSnapshotByName(name string) (Snapshot, error) {
	return c.snapshots.getByName(name)
}

// ListSnapshots returns every snapshot record, sorted by ID.
func (c *Catalog) ListSnapshots() []Snapshot { return c.snapshots.list() }

// SnapshotLen returns the number of snapshot records.
func (c *Catalog) SnapshotLen() int { return c.snapshots.len() }

// PutSnapshot durably writes s, adding or replacing the snapshot record with
// s.ID. It fails with ErrNameTaken, writing nothing, when another snapshot
// holds s.Name. It returns only once the record is on stable storage.
func (c *Catalog) PutSnapshot(s Snapshot) error { return c.snapshots.put(s) }

// DeleteSnapshot durably removes the snapshot record with the given ID.
// Removing a missing record is not an error.
func (c *Catalog) DeleteSnapshot(id string) error { return c.snapshots.remove(id) }

func (s Snapshot) recordID() string   { return s.ID }
func (s Snapshot) recordName() string { return s.Name }
func (s Snapshot) recordState() State { return s.State }

func (s Snapshot) clone() Snapshot {
	if s.Parameters != nil {
		p := make(map[string]string, len(s.Parameters))
		for k, v := range s.Parameters {
			p[k] = v
		}
		s.Parameters = p
	}
	return s
}
