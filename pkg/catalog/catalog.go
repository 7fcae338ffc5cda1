// Package catalog is the durable record of the volumes and snapshots a node
// holds. Each volume and each snapshot is one small file, written atomically
// and fsynced with its directory; an index by ID and by name is kept in
// memory. The catalog knows
// nothing about where volume bytes live: pkg/volume orders catalog writes
// around disk work so that a crash at any instant can be finished or rolled
// back on the next start.
package catalog

import (
	"errors"
	"path/filepath"
	"time"
)

var (
	// ErrNotFound means no record has the requested ID or name.
	ErrNotFound = errors.New("not found in catalog")
	// ErrNameTaken means another record of the same kind already holds the
	// requested name.
	ErrNameTaken = errors.New("name already taken")
)

// State is where a volume or snapshot is in its lifecycle. Anything but
// StateReady is an intent that recovery finishes or rolls back.
type State string

const (
	// StateCreating is recorded before the volume's or snapshot's directory
	// is made.
	StateCreating State = "creating"
	// StateReady is recorded once the directory exists; only ready volumes
	// and snapshots were ever returned to the CO.
	StateReady State = "ready"
	// StateDeleting is recorded before a volume's reclaim policy is applied
	// or a snapshot's directory is removed.
	StateDeleting State = "deleting"
)

// Volume is one volume's record.
type Volume struct {
	// ID is the driver-generated volume ID; the record file is named after it.
	ID string `json:"id"`
	// Name is the CO's volume name (the PV name in Kubernetes).
	Name string `json:"name"`
	// Pool names the pool that holds the volume's directory.
	Pool string `json:"pool"`
	// CapacityBytes is the size promised to the CO.
	CapacityBytes int64 `json:"capacityBytes"`
	// Parameters are the CreateVolume parameters, kept to answer idempotent
	// retries and to report how the volume was made.
	Parameters map[string]string `json:"parameters,omitempty"`
	// OnDelete is the reclaim policy applied by DeleteVolume.
	OnDelete string `json:"onDelete"`
	// PVCNamespace, PVCName and PVName come from the provisioner's
	// --extra-create-metadata, when it is enabled.
	PVCNamespace string `json:"pvcNamespace,omitempty"`
	PVCName      string `json:"pvcName,omitempty"`
	PVName       string `json:"pvName,omitempty"`
	// CreatedAt is when CreateVolume first recorded the volume (UTC).
	CreatedAt time.Time `json:"createdAt"`
	// State is the lifecycle state; see State.
	State State `json:"state"`
	// ReclaimTarget is where an archived volume is moved, fixed when the
	// delete intent is recorded so that a replay moves it to the same place.
	ReclaimTarget string `json:"reclaimTarget,omitempty"`
	// Block is set for a block volume: its directory holds one sparse file
	// (pool.BlockFile) that the node attaches to a loop device.
	Block bool `json:"block,omitempty"`
	// SourceSnapshotID and SourceVolumeID name what a restored or cloned
	// volume was made from (CSI volume_content_source).
	SourceSnapshotID string `json:"sourceSnapshotID,omitempty"`
	SourceVolumeID   string `json:"sourceVolumeID,omitempty"`
}

// Problem is what an operator should look at in the catalog's directories,
// found at startup: a record file that cannot be read or decoded, something
// the catalog never writes, or a directory whose records cannot be
// rewritten in place (see recordDir.overwrite). Entries are left on disk
// untouched; a record file's ID stays reserved and answers ErrUnreadable.
type Problem struct {
	File string
	// ID is the key of a record file (its name without .json), empty for
	// other entries.
	ID  string
	Err error
}

// Catalog holds volume and snapshot records. It is safe for concurrent use;
// callers serialise changes to one record (pkg/volume and the CSI services
// hold per-key locks).
type Catalog struct {
	volumes   *table[Volume]
	snapshots *table[Snapshot]
}

// New returns an empty catalog over dir; Load reads what is on disk.
// Splitting the two lets the driver serve Probe ("not ready") while a large
// catalog is still being read.
func New(dir string) *Catalog {
	return &Catalog{
		volumes:   newTable[Volume](filepath.Join(dir, "volumes"), "volume"),
		snapshots: newTable[Snapshot](filepath.Join(dir, "snapshots"), "snapshot"),
	}
}

// Open is New followed by Load.
func Open(dir string) (*Catalog, []Problem, error) {
	c := New(dir)
	problems, err := c.Load()
	if err != nil {
		return nil, nil, err
	}
	return c, problems, nil
}

// Load (re)reads every volume and snapshot record under dir, creating the
// record directories when missing, and replaces the in-memory indexes.
// Records that cannot be decoded are returned as Problems and left in place;
// their IDs stay reserved so that nothing reuses them. Load must not run
// concurrently with any write.
func (c *Catalog) Load() ([]Problem, error) {
	problems, err := c.volumes.load()
	if err != nil {
		return nil, err
	}
	more, err := c.snapshots.load()
	if err != nil {
		return nil, err
	}
	return append(problems, more...), nil
}

// Pad rewrites the records Load found without the room a later state needs
// to be recorded in place on a full filesystem (records written by an
// earlier version of the driver), and returns how many it rewrote. It must
// not run concurrently with any write; on failure the rest are tried again
// after the next Load.
func (c *Catalog) Pad() (int, error) {
	n, err := c.volumes.pad()
	if err != nil {
		return n, err
	}
	m, err := c.snapshots.pad()
	return n + m, err
}

// Problems returns what the last Load could not understand, volumes first.
func (c *Catalog) Problems() []Problem {
	return append(c.volumes.problemList(), c.snapshots.problemList()...)
}

// Get returns the volume record with the given ID: ErrNotFound when there
// is none, ErrUnreadable when its file could not be read at Load.
func (c *Catalog) Get(id string) (Volume, error) { return c.volumes.get(id) }

// GetByName returns the volume record holding the given name.
func (c *Catalog) GetByName(name string) (Volume, error) { return c.volumes.getByName(name) }

// List returns every volume record, sorted by ID.
func (c *Catalog) List() []Volume { return c.volumes.list() }

// Len returns the number of volume records.
func (c *Catalog) Len() int { return c.volumes.len() }

// Put durably writes v, adding or replacing the volume record with v.ID. It
// fails with ErrNameTaken, writing nothing, when another volume holds
// v.Name. Put returns only once the record is on stable storage.
func (c *Catalog) Put(v Volume) error { return c.volumes.put(v) }

// Delete durably removes the volume record with the given ID. Removing a
// missing record is not an error.
func (c *Catalog) Delete(id string) error { return c.volumes.remove(id) }

func (v Volume) recordID() string   { return v.ID }
func (v Volume) recordName() string { return v.Name }
func (v Volume) recordState() State { return v.State }

func (v Volume) clone() Volume {
	if v.Parameters != nil {
		p := make(map[string]string, len(v.Parameters))
		for k, val := range v.Parameters {
			p[k] = val
		}
		v.Parameters = p
	}
	return v
}
