package crash

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

var snapIDPattern = regexp.MustCompile(`^snap-[0-9a-f]{32}$`)

// snap is one snapshot the test asked for. Its data is the data file of its
// source at snapshot time: the source's volume ID.
type snap struct {
	name   string
	owner  int
	source string // source volume ID
	id     string // empty while a create is uncertain and no record was seen
	state  volState
}

// newSnap registers a snapshot of v about to be taken by worker w.
func (m *model) newSnap(w, round int, v *vol) *snap {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	s := &snap{name: fmt.Sprintf("crash-snap-r%d-w%d-%d", round, w, m.seq), owner: w, source: v.id}
	m.snaps = append(m.snaps, s)
	m.stats.snaps++
	return s
}

func (m *model) acknowledgeSnap(s *snap, id string, retry bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s.id, s.state = id, live
	m.liveSnaps[s.owner] = append(m.liveSnaps[s.owner], s)
	if retry {
		m.stats.snapRetries++
	} else {
		m.stats.snapsOK++
	}
}

// pickLive returns a random live volume of worker w without taking it; nil
// when w has none.
func (m *model) pickLive(w int, rng *rand.Rand) *vol {
	m.mu.Lock()
	defer m.mu.Unlock()
	if own := m.live[w]; len(own) > 0 {
		return own[rng.IntN(len(own))]
	}
	return nil
}

// pickLiveSnap returns a random live snapshot of worker w, removing it from
// the live ones and marking it as being deleted when take is set; nil when w
// has none.
func (m *model) pickLiveSnap(w int, rng *rand.Rand, take bool) *snap {
	m.mu.Lock()
	defer m.mu.Unlock()
	own := m.liveSnaps[w]
	if len(own) == 0 {
		return nil
	}
	i := rng.IntN(len(own))
	s := own[i]
	if take {
		own[i] = own[len(own)-1]
		m.liveSnaps[w] = own[:len(own)-1]
		s.state = deleteUncertain
		m.stats.snapDeletes++
	}
	return s
}

func (m *model) forgetSnap(s *snap) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, o := range m.snaps {
		if o == s {
			m.snaps = append(m.snaps[:i], m.snaps[i+1:]...)
			return
		}
	}
}

func (m *model) confirmSnapDelete(s *snap) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s.state = deleted
	m.stats.snapDeletesOK++
}

func snapshotRequest(s *snap) *csi.CreateSnapshotRequest {
	return &csi.CreateSnapshotRequest{Name: s.name, SourceVolumeId: s.source}
}

func (wl *workload) createSnapshot(s *snap) bool {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	resp, err := wl.ctrl.CreateSnapshot(ctx, snapshotRequest(s))
	if err != nil {
		return wl.failed("CreateSnapshot "+s.name+" of "+s.source, err)
	}
	sn := resp.GetSnapshot()
	if !snapIDPattern.MatchString(sn.GetSnapshotId()) || sn.GetSourceVolumeId() != s.source ||
		sn.GetSizeBytes() != volumeSize || !sn.GetReadyToUse() {
		wl.t.Errorf("CreateSnapshot %s of %s returned %v; want a snap-<32 hex> ID, the source, size %d, ready", s.name, s.source, sn, volumeSize)
		return false
	}
	wl.m.acknowledgeSnap(s, sn.GetSnapshotId(), false)
	return true
}

func (wl *workload) deleteSnapshot(s *snap) bool {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	if _, err := wl.ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: s.id}); err != nil {
		return wl.failed("DeleteSnapshot "+s.id+" ("+s.name+")", err)
	}
	wl.m.confirmSnapDelete(s)
	return true
}

// snapDisk is what a restarted driver lists of snapshots and what its data
// dir holds for them.
type snapDisk struct {
	listed  map[string]*csi.Snapshot // by snapshot ID
	records map[string]record        // by snapshot ID
	byName  map[string]record
	dirs    []string // entries of <data-dir>/snapshots
}

func listSnapshots(t *testing.T, h *harness) map[string]*csi.Snapshot {
	t.Helper()
	out := make(map[string]*csi.Snapshot)
	token := ""
	for {
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		resp, err := h.proc.ctrl.ListSnapshots(ctx, &csi.ListSnapshotsRequest{MaxEntries: 16, StartingToken: token})
		cancel()
		if err != nil {
			t.Fatalf("ListSnapshots after restart #%d: %v", h.starts, err)
		}
		for _, e := range resp.GetEntries() {
			id := e.GetSnapshot().GetSnapshotId()
			if _, dup := out[id]; dup {
				t.Errorf("ListSnapshots returned %s twice", id)
			}
			out[id] = e.GetSnapshot()
		}
		if token = resp.GetNextToken(); token == "" {
			return out
		}
	}
}

func observeSnapshots(t *testing.T, h *harness) *snapDisk {
	t.Helper()
	d := &snapDisk{listed: listSnapshots(t, h), byName: map[string]record{}}
	d.records = readRecords(t, filepath.Join(h.dataDir, "catalog", "snapshots"))
	for _, r := range d.records {
		d.byName[r.Name] = r
	}
	for _, e := range readDirNames(t, filepath.Join(h.dataDir, "snapshots")) {
		d.dirs = append(d.dirs, e.Name())
	}
	for _, sub := range []string{"volumes", "snapshots"} {
		dir := filepath.Join(h.dataDir, ".staging", sub)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		for _, e := range readDirNames(t, dir) {
			t.Errorf("partial copy .staging/%s/%s was left after recovery", sub, e.Name())
		}
	}
	return d
}

// checkSnapshots compares a restarted driver's snapshots with the model and
// settles the snapshot deletes in flight at the kill, as checkInvariants
// does for volumes.
func checkSnapshots(t *testing.T, h *harness, m *model) {
	d := observeSnapshots(t, h)
	m.mu.Lock()
	defer m.mu.Unlock()
	known := make(map[string]*snap)
	for _, s := range m.snaps {
		switch s.state {
		case live:
			d.checkIntact(t, h, s, "acknowledged snapshot")
		case deleted:
			d.checkGone(t, h, s, "snapshot whose delete was confirmed")
		case createUncertain:
			r, ok := d.byName[s.name]
			if !ok {
				s.id = ""
				continue
			}
			s.id = r.ID
			d.checkIntact(t, h, s, "snapshot whose create was cut off")
		case deleteUncertain:
			if _, ok := d.listed[s.id]; ok {
				d.checkIntact(t, h, s, "snapshot whose delete was cut off and is still listed")
				s.state = live
				m.liveSnaps[s.owner] = append(m.liveSnaps[s.owner], s)
			} else {
				d.checkGone(t, h, s, "snapshot whose delete was cut off and is no longer listed")
				s.state = deleted
			}
		}
		known[s.id] = s
	}
	for id := range d.listed {
		if known[id] == nil {
			t.Errorf("snapshot %s is listed but was never returned by CreateSnapshot nor matched to a cut-off create", id)
		}
	}
	for id, r := range d.records {
		if _, ok := d.listed[id]; !ok {
			t.Errorf("snapshot record %s (name %s) is in state %q but the snapshot is not listed: recovery left an unfinished intent", id, r.Name, r.State)
		}
	}
	log := h.currentLog()
	for _, dir := range d.dirs {
		if _, ok := d.listed[dir]; ok {
			continue
		}
		path := filepath.Join(h.dataDir, "snapshots", dir)
		if strings.Contains(log, "Snapshot directory in pool has no snapshot record") && strings.Contains(log, path) {
			t.Logf("snapshots/%s has no record and was reported as an orphan", dir)
			continue
		}
		t.Errorf("snapshot directory snapshots/%s is neither a listed snapshot nor reported as an orphan", dir)
	}
}

// checkIntact: s is listed with its source and size, has a ready record and
// its directory holds the source's data at snapshot time.
func (d *snapDisk) checkIntact(t *testing.T, h *harness, s *snap, what string) {
	t.Helper()
	ls, ok := d.listed[s.id]
	if !ok {
		t.Errorf("%s %s (%s of %s) is not listed after the restart", what, s.id, s.name, s.source)
		return
	}
	if ls.GetSourceVolumeId() != s.source || ls.GetSizeBytes() != volumeSize || !ls.GetReadyToUse() || ls.GetCreationTime() == nil {
		t.Errorf("%s %s (%s) is listed as %v; want source %s, size %d, ready, with a creation time", what, s.id, s.name, ls, s.source, volumeSize)
	}
	if r, ok := d.records[s.id]; !ok || r.Name != s.name || r.State != "ready" {
		t.Errorf("%s %s (%s): record = %+v (present %v), want name %s in state ready", what, s.id, s.name, r, ok, s.name)
	}
	if err := checkData(filepath.Join(h.dataDir, "snapshots", s.id), s.source); err != nil {
		t.Errorf("%s %s (%s of %s): %v", what, s.id, s.name, s.source, err)
	}
}

// checkGone: s is not listed, has no record and no directory.
func (d *snapDisk) checkGone(t *testing.T, h *harness, s *snap, what string) {
	t.Helper()
	if _, ok := d.listed[s.id]; ok {
		t.Errorf("%s %s (%s) is still listed", what, s.id, s.name)
	}
	if r, ok := d.records[s.id]; ok {
		t.Errorf("%s %s (%s) still has a record in state %q", what, s.id, s.name, r.State)
	}
	if dir := filepath.Join(h.dataDir, "snapshots", s.id); exists(dir) {
		t.Errorf("%s %s (%s): directory %s still exists", what, s.id, s.name, dir)
	}
}

// resolveUncertainSnapshots retries, as the snapshotter would, every
// snapshot cut off by the kill whose source is still live. One the catalog
// already holds must come back with the same ID.
func resolveUncertainSnapshots(t *testing.T, h *harness, m *model) {
	m.mu.Lock()
	var pending []*snap
	liveVol := make(map[string]bool)
	for _, v := range m.vols {
		if v.state == live {
			liveVol[v.id] = true
		}
	}
	for _, s := range m.snaps {
		if s.state == createUncertain {
			pending = append(pending, s)
		}
	}
	m.mu.Unlock()
	for _, s := range pending {
		if s.id == "" && !liveVol[s.source] {
			// Never made, and its source is gone: nothing to retry or
			// check again.
			m.forgetSnap(s)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		resp, err := h.proc.ctrl.CreateSnapshot(ctx, snapshotRequest(s))
		cancel()
		if err != nil {
			t.Errorf("retried CreateSnapshot %s after restart #%d: %v", s.name, h.starts, err)
			continue
		}
		id := resp.GetSnapshot().GetSnapshotId()
		if s.id != "" && id != s.id {
			t.Errorf("retried CreateSnapshot %s returned %s, but recovery kept it as %s", s.name, id, s.id)
		}
		m.acknowledgeSnap(s, id, true)
	}
}

// readRecords reads every record file of a catalog directory, reporting
// temporary files and entries that are not records.
func readRecords(t *testing.T, dir string) map[string]record {
	t.Helper()
	out := make(map[string]record)
	for _, e := range readDirNames(t, dir) {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			t.Errorf("temporary record %s was left in %s after recovery", name, dir)
			continue
		}
		id, ok := strings.CutSuffix(name, ".json")
		if !ok || !e.Type().IsRegular() {
			t.Errorf("unexpected entry %s in %s", name, dir)
			continue
		}
		r, err := readRecord(filepath.Join(dir, name))
		if err != nil || r.ID != id {
			t.Errorf("catalog record %s cannot be read or names another ID (%q): %v", name, r.ID, err)
			continue
		}
		out[id] = r
	}
	return out
}
