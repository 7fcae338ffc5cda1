// Package catalog is the durable record of the volumes a node holds. Each
// volume is one small file, written atomically and fsynced with its
// directory; an index by ID and by name is kept in memory. The catalog knows
// nothing about where volume bytes live: pkg/volume orders catalog writes
// around disk work so that a crash at any instant can be finished or rolled
// back on the next start.
package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

var (
	// ErrNotFound means no record has the requested ID or name.
	ErrNotFound = errors.New("not found in catalog")
	// ErrNameTaken means another volume already holds the requested name.
	ErrNameTaken = errors.New("name already taken by another volume")
)

// State is where a volume is in its lifecycle. Anything but StateReady is an
// intent that recovery finishes or rolls back.
type State string

const (
	// StateCreating is recorded before the volume's directory is made.
	StateCreating State = "creating"
	// StateReady is recorded once the directory exists; only ready volumes
	// were ever returned to the CO.
	StateReady State = "ready"
	// StateDeleting is recorded before the reclaim policy is applied.
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

// Problem is a record file that could not be understood at startup. It is
// left on disk untouched for an operator to look at.
type Problem struct {
	File string
	Err  error
}

// Catalog holds volume records. It is safe for concurrent use; callers
// serialise changes to one volume (pkg/volume holds per-volume locks).
type Catalog struct {
	volumes recordDir

	// mu guards the indexes only; it is never held across disk I/O.
	mu     sync.Mutex
	byID   map[string]Volume
	byName map[string]string
	// problems holds the keys of record files Open could not load; Put
	// refuses them so that those files stay as they were found.
	problems map[string]bool
}

// New returns an empty catalog over dir; Load reads what is on disk.
// Splitting the two lets the driver serve Probe ("not ready") while a large
// catalog is still being read.
func New(dir string) *Catalog {
	return &Catalog{
		volumes:  recordDir{path: filepath.Join(dir, "volumes")},
		byID:     make(map[string]Volume),
		byName:   make(map[string]string),
		problems: make(map[string]bool),
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

// Load (re)reads every record under dir, creating dir when missing, and
// replaces the in-memory indexes. Records that cannot be decoded are
// returned as Problems and left in place; their IDs stay reserved so that
// nothing reuses them. Load must not run concurrently with Put or Delete.
func (c *Catalog) Load() ([]Problem, error) {
	files, err := c.volumes.load()
	if err != nil {
		return nil, err
	}
	byID := make(map[string]Volume, len(files))
	byName := make(map[string]string, len(files))
	bad := make(map[string]bool)
	var problems []Problem
	for _, f := range files {
		var v Volume
		if err := json.Unmarshal(f.data, &v); err != nil {
			problems = append(problems, Problem{File: c.volumes.file(f.key), Err: err})
			bad[f.key] = true
			continue
		}
		if v.ID != f.key {
			problems = append(problems, Problem{File: c.volumes.file(f.key),
				Err: fmt.Errorf("record holds ID %q, file is named for %q", v.ID, f.key)})
			bad[f.key] = true
			continue
		}
		if other, taken := byName[v.Name]; taken {
			problems = append(problems, Problem{File: c.volumes.file(f.key),
				Err: fmt.Errorf("name %q is also held by volume %s", v.Name, other)})
			bad[f.key] = true
			continue
		}
		byID[v.ID] = v
		byName[v.Name] = v.ID
	}
	c.mu.Lock()
	c.byID, c.byName, c.problems = byID, byName, bad
	c.mu.Unlock()
	return problems, nil
}

// Get returns the record with the given ID.
func (c *Catalog) Get(id string) (Volume, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.byID[id]
	if !ok {
		return Volume{}, fmt.Errorf("volume %s: %w", id, ErrNotFound)
	}
	return v.clone(), nil
}

// GetByName returns the record holding the given name.
func (c *Catalog) GetByName(name string) (Volume, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.byName[name]
	if !ok {
		return Volume{}, fmt.Errorf("volume named %q: %w", name, ErrNotFound)
	}
	return c.byID[id].clone(), nil
}

// List returns every record, sorted by ID.
func (c *Catalog) List() []Volume {
	c.mu.Lock()
	out := make([]Volume, 0, len(c.byID))
	for _, v := range c.byID {
		out = append(out, v.clone())
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Len returns the number of records.
func (c *Catalog) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byID)
}

// Put durably writes v, adding or replacing the record with v.ID. It fails
// with ErrNameTaken, writing nothing, when another ID holds v.Name. Put
// returns only once the record is on stable storage.
func (c *Catalog) Put(v Volume) error {
	v = v.clone()
	c.mu.Lock()
	if c.problems[v.ID] {
		c.mu.Unlock()
		return fmt.Errorf("volume ID %s: its record file %s could not be loaded and is kept for an operator; the ID cannot be reused",
			v.ID, c.volumes.file(v.ID))
	}
	old, existed := c.byID[v.ID]
	if holder, taken := c.byName[v.Name]; taken && holder != v.ID {
		c.mu.Unlock()
		return fmt.Errorf("volume name %q held by %s: %w", v.Name, holder, ErrNameTaken)
	}
	// Claim the name before the slow write so that a concurrent Put of the
	// same name with another ID fails instead of racing.
	c.byID[v.ID] = v
	c.byName[v.Name] = v.ID
	c.mu.Unlock()

	if err := c.volumes.write(v.ID, v); err != nil {
		c.mu.Lock()
		if existed {
			c.byID[v.ID] = old
			if old.Name != v.Name {
				delete(c.byName, v.Name)
			}
		} else {
			delete(c.byID, v.ID)
			delete(c.byName, v.Name)
		}
		c.mu.Unlock()
		return err
	}
	if existed && old.Name != v.Name {
		// The record now on disk holds the new name only: free the old one.
		c.mu.Lock()
		if c.byName[old.Name] == v.ID {
			delete(c.byName, old.Name)
		}
		c.mu.Unlock()
	}
	return nil
}

// Delete durably removes the record with the given ID. Removing a missing
// record is not an error.
func (c *Catalog) Delete(id string) error {
	if err := c.volumes.remove(id); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.byID[id]; ok {
		delete(c.byName, v.Name)
		delete(c.byID, id)
	}
	return nil
}

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
