// Package crash kills the real dirvol binary with SIGKILL in the middle of
// bursts of CreateVolume, DeleteVolume, CreateSnapshot, DeleteSnapshot,
// restores from snapshots and ControllerModifyVolume (onDelete), restarts it on the same data dir and checks the
// catalog invariants of the design: nothing the driver acknowledged is
// lost, nothing whose delete it confirmed comes back, and no half-made or
// half-deleted volume, snapshot, record or directory is left behind.
package crash

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	rounds     = 12
	workers    = 4
	volumeSize = 1 << 20
	// rpcTimeout bounds every RPC; calls cut off by a kill fail long before.
	rpcTimeout = 10 * time.Second
	// minKillDelay and maxKillDelay bound how long a burst runs before the kill.
	minKillDelay = 20 * time.Millisecond
	maxKillDelay = 300 * time.Millisecond
)

// policies are cycled through by creates: no parameters (onDelete=delete),
// then onDelete=retain, then onDelete=archive.
var policies = []string{"delete", "retain", "archive"}

// claimNames is how many claim names each worker's namespace cycles
// through, so that claims are made again under the name of one whose
// volume is still live or retained, as a PVC recreated while its old
// PersistentVolume is kept.
const claimNames = 3

// parameters are what the provisioner sends for v: its reclaim policy
// (none for onDelete=delete) and, with --extra-create-metadata, its claim.
func (v *vol) parameters() map[string]string {
	p := map[string]string{}
	if v.policy != "delete" {
		p["onDelete"] = v.policy
	}
	if v.namespace != "" {
		p["csi.storage.k8s.io/pvc/namespace"] = v.namespace
		p["csi.storage.k8s.io/pvc/name"] = v.claim
		p["csi.storage.k8s.io/pv/name"] = v.name
	}
	if len(p) == 0 {
		return nil
	}
	return p
}

// archivePrefix is how an archive of v is named, up to its time stamp.
func (v *vol) archivePrefix() string {
	if v.namespace != "" {
		return v.namespace + "_" + v.claim + "_" + v.name + "_"
	}
	return v.name + "_"
}

// volState is what the test knows about a volume.
type volState int

const (
	// createUncertain: CreateVolume was in flight at a kill (or failed).
	createUncertain volState = iota
	// live: CreateVolume returned the volume and its data file was written.
	live
	// deleteUncertain: DeleteVolume was in flight at a kill (or failed).
	deleteUncertain
	// deleted: DeleteVolume returned OK.
	deleted
)

// vol is one volume the test asked for. id is empty while a create is
// uncertain and no record of it has been seen.
type vol struct {
	name, policy string
	// namespace and claim are the PVC v is made for; empty for none.
	namespace, claim string
	owner            int
	id               string
	state            volState
	// from is the snapshot a restored volume is made from.
	from *snap
	// modifyTo is the policy of a ControllerModifyVolume cut off by a
	// kill (or failed): until it is retried, the volume may have either.
	modifyTo string
}

// model is the test's view of every volume, shared by the workers. Each
// worker deletes only volumes it owns, so no two RPCs touch one volume.
type model struct {
	mu        sync.Mutex
	vols      []*vol
	live      [workers][]*vol
	snaps     []*snap
	liveSnaps [workers][]*snap
	seq       int
	stats     stats
}

type stats struct {
	creates, createsOK, retries, deletes, deletesOK, kills  int
	restores, restoresOK                                    int
	snaps, snapsOK, snapRetries, snapDeletes, snapDeletesOK int
	modifies, modifiesOK, modifyRetries                     int
}

// newVol registers a volume about to be created by worker w.
func (m *model) newVol(w, round int) *vol {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	v := &vol{
		name:      fmt.Sprintf("crash-r%d-w%d-%d", round, w, m.seq),
		policy:    policies[m.seq%len(policies)],
		owner:     w,
		namespace: fmt.Sprintf("ns-%d", w),
		claim:     fmt.Sprintf("claim-%d", m.seq%claimNames),
	}
	m.vols = append(m.vols, v)
	m.stats.creates++
	return v
}

// acknowledge marks v as returned by CreateVolume with the given ID. retry
// is true for a create repeated after a restart, false for one of the
// workload.
func (m *model) acknowledge(v *vol, id string, retry bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v.id, v.state = id, live
	m.live[v.owner] = append(m.live[v.owner], v)
	if retry {
		m.stats.retries++
	} else {
		m.stats.createsOK++
	}
}

// takeLive removes a random live volume of worker w and marks it as being
// deleted; nil when w has none.
func (m *model) takeLive(w int, rng *rand.Rand) *vol {
	m.mu.Lock()
	defer m.mu.Unlock()
	own := m.live[w]
	if len(own) == 0 {
		return nil
	}
	i := rng.IntN(len(own))
	v := own[i]
	own[i] = own[len(own)-1]
	m.live[w] = own[:len(own)-1]
	v.state = deleteUncertain
	m.stats.deletes++
	return v
}

func (m *model) confirmDelete(v *vol) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v.state = deleted
	m.stats.deletesOK++
}

// workload is one burst of creates and deletes against one driver process.
type workload struct {
	t       *testing.T
	m       *model
	ctrl    csi.ControllerClient
	dataDir string
	round   int
	killed  *atomic.Bool
	stop    chan struct{}
}

func (wl *workload) run(w int, rng *rand.Rand) {
	// Once the kill is under way, a new call could only fail: stop, so
	// that what is uncertain is what was in flight at the kill.
	// A worker whose call failed for another reason stops too, rather than
	// repeat the failure.
	for !wl.killed.Load() {
		select {
		case <-wl.stop:
			return
		default:
		}
		if !wl.step(w, rng) {
			return
		}
	}
}

// step runs one operation of worker w, on its own volumes and snapshots
// only: out of ten, three delete a volume, two snapshot one, one deletes a
// snapshot, one restores a snapshot into a new volume, one changes a
// volume's reclaim policy, and the rest (or an operation that finds nothing
// to work on) create a volume. Deleting a
// volume leaves its snapshots live.
func (wl *workload) step(w int, rng *rand.Rand) bool {
	switch r := rng.IntN(10); {
	case r < 3:
		if v := wl.m.takeLive(w, rng); v != nil {
			return wl.delete(v)
		}
	case r < 5:
		if v := wl.m.pickLive(w, rng); v != nil {
			return wl.createSnapshot(wl.m.newSnap(w, wl.round, v))
		}
	case r < 6:
		if s := wl.m.pickLiveSnap(w, rng, true); s != nil {
			return wl.deleteSnapshot(s)
		}
	case r < 7:
		if s := wl.m.pickLiveSnap(w, rng, false); s != nil {
			return wl.create(wl.m.newRestore(w, wl.round, s))
		}
	case r < 8:
		if v := wl.m.pickLive(w, rng); v != nil {
			return wl.modify(v, policies[rng.IntN(len(policies))])
		}
	}
	return wl.create(wl.m.newVol(w, wl.round))
}

// newRestore registers a volume about to be restored from s by worker w.
func (m *model) newRestore(w, round int, s *snap) *vol {
	v := m.newVol(w, round)
	m.mu.Lock()
	defer m.mu.Unlock()
	v.from = s
	m.stats.restores++
	return v
}

func createRequest(v *vol) *csi.CreateVolumeRequest {
	var source *csi.VolumeContentSource
	if v.from != nil {
		source = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: v.from.id}}}
	}
	return &csi.CreateVolumeRequest{
		VolumeContentSource: source,
		Name:                v.name,
		CapacityRange:       &csi.CapacityRange{RequiredBytes: volumeSize},
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		}},
		Parameters: v.parameters(),
	}
}

func (wl *workload) create(v *vol) bool {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	resp, err := wl.ctrl.CreateVolume(ctx, createRequest(v))
	if err != nil {
		return wl.failed("CreateVolume "+v.name, err)
	}
	id := resp.GetVolume().GetVolumeId()
	if !idPattern.MatchString(id) {
		wl.t.Errorf("CreateVolume %s returned volume ID %q, not of the form vol-<32 hex>", v.name, id)
		return false
	}
	if got := resp.GetVolume().GetCapacityBytes(); got != volumeSize {
		wl.t.Errorf("CreateVolume %s (%s) returned capacity %d, want %d", v.name, id, got, volumeSize)
	}
	if v.from != nil {
		// A restore starts with the snapshot's data: its source's ID.
		if err := checkData(filepath.Join(wl.dataDir, "volumes", id), v.from.source); err != nil {
			wl.t.Errorf("volume %s (%s) restored from snapshot %s: %v", v.name, id, v.from.id, err)
		}
		wl.m.mu.Lock()
		wl.m.stats.restoresOK++
		wl.m.mu.Unlock()
	}
	// The workload writes into its volume; this is the data the driver
	// must never lose.
	if err := writeData(wl.dataDir, id); err != nil {
		wl.t.Errorf("write data into acknowledged volume %s (%s): %v", v.name, id, err)
	}
	wl.m.acknowledge(v, id, false)
	return true
}

func (wl *workload) delete(v *vol) bool {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	if _, err := wl.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.id}); err != nil {
		return wl.failed("DeleteVolume "+v.id+" ("+v.name+")", err)
	}
	wl.m.confirmDelete(v)
	return true
}

// failed accepts the errors of a call cut off by the kill and reports any
// other, returning false. Either way the operation stays uncertain and is
// judged after the restart.
func (wl *workload) failed(call string, err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded:
		if wl.killed.Load() {
			return true
		}
	}
	wl.t.Errorf("%s failed while the driver was running: %v", call, err)
	return false
}

// writeData writes the volume's ID into <data-dir>/volumes/<id>/data and
// fsyncs it.
func writeData(dataDir, id string) error {
	f, err := os.OpenFile(filepath.Join(dataDir, "volumes", id, "data"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(id); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func TestCrashRecovery(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the crash test runs the driver on real directories and expects root")
	}
	h := newHarness(t)
	h.start()

	m := &model{}
	var total recoveryCounts
	for round := 1; round <= rounds; round++ {
		seed := rand.Uint64()
		rng := rand.New(rand.NewPCG(seed, uint64(round)))
		delay := minKillDelay + time.Duration(rng.Int64N(int64(maxKillDelay-minKillDelay)+1))
		before := m.snapshotStats()

		burst(t, h, m, round, seed, delay)
		h.start()
		checkInvariants(t, h, m)
		checkView(t, h)
		checkSnapshots(t, h, m)
		resolveUncertain(t, h, m)
		resolveUncertainSnapshots(t, h, m)
		resolveUncertainModifies(t, h, m)
		after := m.snapshotStats()
		recovery := "recovery counts not found in the log"
		if rc, ok := h.recovered(); ok {
			recovery = fmt.Sprintf("recovery rolled back %d creates and %d snapshots, finished %d deletes and %d snapshot deletes",
				rc.rolledBack, rc.rolledBackSnaps, rc.finished, rc.finishedSnaps)
			total = total.add(rc)
		}
		t.Logf("round %d: seed %d, killed after %v; creates %d (%d acknowledged, %d cut off and retried; %d restores, %d acknowledged), "+
			"deletes %d (%d confirmed); snapshots %d (%d acknowledged, %d retried), snapshot deletes %d (%d confirmed); "+
			"modifies %d (%d acknowledged, %d retried); %s",
			round, seed, delay, after.creates-before.creates, after.createsOK-before.createsOK,
			after.retries-before.retries, after.restores-before.restores, after.restoresOK-before.restoresOK,
			after.deletes-before.deletes, after.deletesOK-before.deletesOK,
			after.snaps-before.snaps, after.snapsOK-before.snapsOK, after.snapRetries-before.snapRetries,
			after.snapDeletes-before.snapDeletes, after.snapDeletesOK-before.snapDeletesOK,
			after.modifies-before.modifies, after.modifiesOK-before.modifiesOK, after.modifyRetries-before.modifyRetries, recovery)
		if t.Failed() {
			t.Fatalf("round %d (seed %d, kill after %v): invariants violated; see the errors above and the driver log below", round, seed, delay)
		}
	}
	// The last restart must also pass a check with nothing in flight, and
	// the data dir, now holding every volume the rounds left, must be
	// refused to a second driver.
	checkInvariants(t, h, m)
	checkView(t, h)
	checkSnapshots(t, h, m)
	h.checkDataDirLock()
	s := m.snapshotStats()
	t.Logf("total: %d rounds, %d kills, %d creates (%d acknowledged, %d retried; %d restores, %d acknowledged), %d deletes (%d confirmed), "+
		"%d snapshots (%d acknowledged, %d retried), %d snapshot deletes (%d confirmed), %d modifies (%d acknowledged, %d retried); "+
		"recovery rolled back %d interrupted creates and %d snapshots, finished %d interrupted deletes and %d snapshot deletes; "+
		"%d volumes and %d snapshots listed at the end",
		rounds, s.kills, s.creates, s.createsOK, s.retries, s.restores, s.restoresOK, s.deletes, s.deletesOK,
		s.snaps, s.snapsOK, s.snapRetries, s.snapDeletes, s.snapDeletesOK, s.modifies, s.modifiesOK, s.modifyRetries,
		total.rolledBack, total.rolledBackSnaps, total.finished, total.finishedSnaps,
		len(listVolumes(t, h)), len(listSnapshots(t, h)))
	if s.snapsOK == 0 || s.restoresOK == 0 || s.snapDeletesOK == 0 || s.modifiesOK == 0 {
		t.Errorf("the workload acknowledged %d snapshots, %d restores, %d snapshot deletes and %d modifies; want some of each",
			s.snapsOK, s.restoresOK, s.snapDeletesOK, s.modifiesOK)
	}
}

// burst runs the workers against the current driver process and kills it
// after delay. The workers are stopped and waited for even when the kill
// fails the test.
func burst(t *testing.T, h *harness, m *model, round int, seed uint64, delay time.Duration) {
	wl := &workload{t: t, m: m, ctrl: h.proc.ctrl, dataDir: h.dataDir, round: round,
		killed: &h.proc.killed, stop: make(chan struct{})}
	var wg sync.WaitGroup
	defer func() {
		close(wl.stop)
		wg.Wait()
	}()
	for w := range workers {
		wrng := rand.New(rand.NewPCG(seed, uint64(1000+w)))
		wg.Go(func() { wl.run(w, wrng) })
	}
	time.Sleep(delay)
	h.kill()
	m.mu.Lock()
	m.stats.kills++
	m.mu.Unlock()
}

func (m *model) snapshotStats() stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}
