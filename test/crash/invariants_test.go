package crash

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

var (
	idPattern = regexp.MustCompile(`^vol-[0-9a-f]{32}$`)
	// stampPattern is the end of an archive name: the UTC time, followed by
	// the volume ID when an earlier archive took the name.
	stampPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z(_vol-[0-9a-f]{32})?$`)
)

// record is the part of a catalog record file the test reads.
type record struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	State        string `json:"state"`
	PVCNamespace string `json:"pvcNamespace"`
	PVCName      string `json:"pvcName"`
	PVName       string `json:"pvName"`
}

func readRecord(path string) (record, error) {
	var r record
	data, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(data, &r)
	}
	return r, err
}

// retainNote is the part of a retained volume's note the test reads.
type retainNote struct {
	VolumeID string `json:"volumeID"`
	Name     string `json:"name"`
}

// disk is what a restarted driver lists and what its data dir holds.
type disk struct {
	dataDir string
	listed  map[string]*csi.Volume // by volume ID
	records map[string]record      // by volume ID
	byName  map[string]record
	dirs    []string        // entries of <data-dir>/volumes
	archive []string        // entries of <data-dir>/archive
	claimed map[string]bool // archive entries matched to a deleted volume
}

func listVolumes(t *testing.T, h *harness) map[string]*csi.Volume {
	t.Helper()
	out := make(map[string]*csi.Volume)
	token := ""
	for {
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		resp, err := h.proc.ctrl.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 16, StartingToken: token})
		cancel()
		if err != nil {
			t.Fatalf("ListVolumes after restart #%d: %v", h.starts, err)
		}
		for _, e := range resp.GetEntries() {
			id := e.GetVolume().GetVolumeId()
			if _, dup := out[id]; dup {
				t.Errorf("ListVolumes returned %s twice", id)
			}
			out[id] = e.GetVolume()
		}
		if token = resp.GetNextToken(); token == "" {
			return out
		}
	}
}

func readDirNames(t *testing.T, dir string) []os.DirEntry {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	return entries
}

// observe lists the volumes and reads the data dir. Stray temporary
// records, files among the volume directories and anything left in the
// trash are reported here.
func observe(t *testing.T, h *harness) *disk {
	t.Helper()
	d := &disk{dataDir: h.dataDir, listed: listVolumes(t, h), records: map[string]record{},
		byName: map[string]record{}, claimed: map[string]bool{}}
	d.records = readRecords(t, filepath.Join(h.dataDir, "catalog", "volumes"))
	for _, r := range d.records {
		d.byName[r.Name] = r
	}
	for _, e := range readDirNames(t, filepath.Join(h.dataDir, "volumes")) {
		if !e.IsDir() {
			t.Errorf("unexpected non-directory %s in %s/volumes", e.Name(), h.dataDir)
			continue
		}
		d.dirs = append(d.dirs, e.Name())
	}
	for _, e := range readDirNames(t, filepath.Join(h.dataDir, "archive")) {
		d.archive = append(d.archive, e.Name())
	}
	for _, e := range readDirNames(t, filepath.Join(h.dataDir, ".trash")) {
		t.Errorf("%s/.trash/%s was left after recovery; the trash must be empty", h.dataDir, e.Name())
	}
	return d
}

// checkInvariants compares a restarted driver with the model, and settles
// the deletes that were in flight at the kill: still listed means the delete
// never happened and the volume is live again; not listed means it must be
// fully reclaimed. Creates in flight are matched to their record, if any;
// resolveUncertain then retries them.
func checkInvariants(t *testing.T, h *harness, m *model) {
	d := observe(t, h)
	m.mu.Lock()
	defer m.mu.Unlock()
	retained := make(map[string]bool) // IDs whose directory stays with a note
	known := make(map[string]*vol)
	for _, v := range m.vols {
		switch v.state {
		case live:
			d.checkIntact(t, v, "acknowledged volume")
		case deleted:
			d.checkReclaimed(t, v, "volume whose delete was confirmed")
		case createUncertain:
			r, ok := d.byName[v.name]
			if !ok {
				// Absent; a directory it left would be an orphan, below.
				v.id = ""
				continue
			}
			v.id = r.ID
			d.checkPresent(t, v, "volume whose create was cut off")
		case deleteUncertain:
			if _, ok := d.listed[v.id]; ok {
				d.checkIntact(t, v, "volume whose delete was cut off and is still listed")
				v.state = live
				m.live[v.owner] = append(m.live[v.owner], v)
			} else {
				d.checkReclaimed(t, v, "volume whose delete was cut off and is no longer listed")
				v.state = deleted
			}
		}
		known[v.id] = v
		if v.state == deleted && v.policy == "retain" {
			retained[v.id] = true
		}
	}

	for id := range d.listed {
		if known[id] == nil {
			t.Errorf("volume %s is listed but was never returned by CreateVolume nor matched to a cut-off create", id)
		}
		if _, err := os.Stat(filepath.Join(d.dataDir, "volumes", id)); err != nil {
			t.Errorf("listed volume %s has no directory: %v", id, err)
		}
	}
	for id, r := range d.records {
		if _, ok := d.listed[id]; !ok {
			t.Errorf("catalog record %s (name %s) is in state %q but the volume is not listed: recovery left an unfinished intent", id, r.Name, r.State)
		}
	}
	for _, dir := range d.dirs {
		if _, ok := d.listed[dir]; ok {
			continue
		}
		hasNote := exists(filepath.Join(d.dataDir, "volumes", dir, ".dirvol-retained-"+dir+".json"))
		switch {
		case hasNote && retained[dir]:
		case hasNote:
			t.Errorf("directory volumes/%s holds a retain note but is not a volume deleted with onDelete=retain", dir)
		default:
			t.Errorf("orphan directory volumes/%s: not a listed volume and not retained (model: %s)", dir, describe(known[dir]))
		}
	}
	for _, a := range d.archive {
		if !d.claimed[a] {
			t.Errorf("archive/%s belongs to no volume deleted with onDelete=archive", a)
		}
	}
}

// checkIntact: v is listed with its size and policy, has its record, its
// directory, its data and no retain note.
func (d *disk) checkIntact(t *testing.T, v *vol, what string) {
	t.Helper()
	if !d.checkPresent(t, v, what) {
		return
	}
	if err := checkData(filepath.Join(d.dataDir, "volumes", v.id), v.id); err != nil {
		t.Errorf("%s %s (%s): %v", what, v.id, v.name, err)
	}
}

// checkPresent is checkIntact without the data file, which the workload
// writes only after CreateVolume returned. It reports whether v is listed.
func (d *disk) checkPresent(t *testing.T, v *vol, what string) bool {
	t.Helper()
	lv, ok := d.listed[v.id]
	if !ok {
		t.Errorf("%s %s (%s, onDelete=%s) is not listed after the restart", what, v.id, v.name, v.policy)
		return false
	}
	if got := lv.GetCapacityBytes(); got != volumeSize {
		t.Errorf("%s %s (%s) is listed with capacity %d, want %d", what, v.id, v.name, got, volumeSize)
	}
	switch got := lv.GetVolumeContext()["onDelete"]; {
	case got == v.policy:
	case v.modifyTo != "" && got == v.modifyTo:
		// The cut-off modify was recorded before the kill.
		v.policy = got
	case v.modifyTo != "":
		t.Errorf("%s %s (%s) is listed with onDelete=%q, want %q or, from the modify cut off, %q", what, v.id, v.name, got, v.policy, v.modifyTo)
	default:
		t.Errorf("%s %s (%s) is listed with onDelete=%q, want %q", what, v.id, v.name, got, v.policy)
	}
	if r, ok := d.records[v.id]; !ok || r.Name != v.name || r.State != "ready" {
		t.Errorf("%s %s (%s): catalog record = %+v (present %v), want name %s in state ready", what, v.id, v.name, r, ok, v.name)
	}
	dir := filepath.Join(d.dataDir, "volumes", v.id)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Errorf("%s %s (%s) is listed but its directory %s is missing: %v", what, v.id, v.name, dir, err)
		return true
	}
	if note := filepath.Join(dir, ".dirvol-retained-"+v.id+".json"); exists(note) {
		t.Errorf("%s %s (%s) is listed but holds a retain note %s", what, v.id, v.name, note)
	}
	return true
}

// checkReclaimed: v is gone from the list and the catalog, and its
// directory went where its policy says.
func (d *disk) checkReclaimed(t *testing.T, v *vol, what string) {
	t.Helper()
	if _, ok := d.listed[v.id]; ok {
		t.Errorf("%s %s (%s, onDelete=%s) is still listed", what, v.id, v.name, v.policy)
	}
	if r, ok := d.records[v.id]; ok {
		t.Errorf("%s %s (%s) still has a catalog record in state %q", what, v.id, v.name, r.State)
	}
	dir := filepath.Join(d.dataDir, "volumes", v.id)
	switch v.policy {
	case "delete":
		if exists(dir) {
			t.Errorf("%s %s (%s, onDelete=delete): directory %s still exists", what, v.id, v.name, dir)
		}
	case "retain":
		if err := checkData(dir, v.id); err != nil {
			t.Errorf("%s %s (%s, onDelete=retain): %v", what, v.id, v.name, err)
		}
		var note retainNote
		data, err := os.ReadFile(filepath.Join(dir, ".dirvol-retained-"+v.id+".json"))
		if err == nil {
			err = json.Unmarshal(data, &note)
		}
		if err != nil || note.VolumeID != v.id || note.Name != v.name {
			t.Errorf("%s %s (%s, onDelete=retain): retain note = %+v, %v; want one naming the volume", what, v.id, v.name, note, err)
		}
	case "archive":
		if exists(dir) {
			t.Errorf("%s %s (%s, onDelete=archive): directory %s still exists", what, v.id, v.name, dir)
		}
		var found []string
		for _, a := range d.archive {
			if stamp, ok := strings.CutPrefix(a, v.archivePrefix()); ok && stampPattern.MatchString(stamp) {
				found = append(found, a)
			}
		}
		if len(found) != 1 {
			t.Errorf("%s %s (%s, onDelete=archive): archive entries %v, want exactly one %s<stamp>[_<volume ID>]", what, v.id, v.name, found, v.archivePrefix())
			return
		}
		d.claimed[found[0]] = true
		if err := checkData(filepath.Join(d.dataDir, "archive", found[0]), v.id); err != nil {
			t.Errorf("%s %s (%s, onDelete=archive): %v", what, v.id, v.name, err)
		}
	}
}

// resolveUncertain retries, as a provisioner would, every create cut off by
// the kill. One the catalog already holds must come back with the same ID.
func resolveUncertain(t *testing.T, h *harness, m *model) {
	m.mu.Lock()
	var pending []*vol
	for _, v := range m.vols {
		if v.state == createUncertain {
			pending = append(pending, v)
		}
	}
	m.mu.Unlock()
	for _, v := range pending {
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		resp, err := h.proc.ctrl.CreateVolume(ctx, createRequest(v))
		cancel()
		if err != nil {
			t.Errorf("retried CreateVolume %s after restart #%d: %v", v.name, h.starts, err)
			continue
		}
		id := resp.GetVolume().GetVolumeId()
		switch {
		case !idPattern.MatchString(id):
			t.Errorf("retried CreateVolume %s returned volume ID %q", v.name, id)
			continue
		case v.id != "" && id != v.id:
			t.Errorf("retried CreateVolume %s returned %s, but recovery kept it as %s", v.name, id, v.id)
		}
		if err := writeData(h.dataDir, id); err != nil {
			t.Errorf("write data into volume %s (%s): %v", v.name, id, err)
		}
		m.acknowledge(v, id, true)
	}
}

// checkData reports whether dir/data holds want.
func checkData(dir, want string) error {
	got, err := os.ReadFile(filepath.Join(dir, "data"))
	if err != nil {
		return err
	}
	if string(got) != want {
		return errors.New(dir + "/data holds " + string(got) + ", want " + want)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func describe(v *vol) string {
	if v == nil {
		return "unknown to the test"
	}
	states := map[volState]string{createUncertain: "create cut off", live: "live", deleteUncertain: "delete cut off", deleted: "deleted"}
	return v.name + ", onDelete=" + v.policy + ", " + states[v.state]
}
