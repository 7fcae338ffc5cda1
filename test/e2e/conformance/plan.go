package conformance

// A suiteRun is one invocation of the suite: the specs whose full text matches
// Focus and not Skip.
type suiteRun struct {
	Name        string
	Focus, Skip string
}

// The suite's spec texts look like
//
//	External Storage [Driver: dirvol.csi.dev] [Testpattern: Dynamic PV (block volmode)] volumeMode should fail to use a volume in a pod with mismatched mode
//
// and carry [Serial], [Disruptive], [Slow] and [Feature:<name>] tags.
const (
	external = `External.Storage`
	// notRun are the specs no run selects: [Disruptive] ones restart the
	// kubelet or stop the node, [Serial] ones need the cluster to
	// themselves, and [Feature:...] ones need a feature dirvol lacks
	// (VolumeSnapshotDataSource and VolumeAttributesClass have runs of
	// their own).
	notRun = `\[Disruptive\]|\[Serial\]|\[Feature:`
	// preprovisionedSnapshots are the specs that import a snapshot with a
	// VolumeSnapshotContent made by hand. deploy/ runs csi-snapshotter on
	// every node (--node-deployment), and such a sidecar acts only on
	// contents labelled snapshot.storage.kubernetes.io/managed-by=<its
	// node>; snapshot-controller labels the contents it makes, the specs
	// do not label theirs, so the content is never made ready. A user
	// importing a snapshot labels it (deploy/README.md, Snapshots).
	preprovisionedSnapshots = `Pre-provisioned Snapshot`
	// hostExecOnThisMachine are the specs that look at the node through a
	// host-exec pod: agnhost running `nsenter --mount=/rootfs/proc/1/ns/mnt`
	// with the host's / at /rootfs. Where the host's PID 1 is an init
	// whose namespaces no one may open (not even root: some sandboxed
	// machines), those specs cannot pass whatever the driver does; the
	// local cluster's run skips them when this host refuses to open
	// /proc/1/ns/mnt, and says so. On E2E_KUBECONFIG's cluster they run.
	hostExecOnThisMachine = `volumeMode should not mount / map unused volumes in a pod`
)

// A plan is the driver files to test and the runs each of them gets.
type plan struct {
	// DriverFiles are test driver files in this directory: each
	// declares one kind of pool (testdriver-<pool>.yaml), and the runs'
	// names and reports carry its <pool> part.
	DriverFiles []string
	Runs        []suiteRun
}

// plans are what E2E_CONFORMANCE selects: "full" runs every spec both driver
// files enable (the directory pool and the btrfs image pool share the
// suite's capabilities, but every volume, snapshot, clone and expansion goes
// through a different backend); "ci" runs a subset on the directory pool.
var plans = map[string]plan{
	"full": {DriverFiles: []string{"testdriver-dir.yaml", "testdriver-btrfs.yaml"}, Runs: runs["full"]},
	"ci":   {DriverFiles: []string{"testdriver-dir.yaml"}, Runs: runs["ci"]},
}

// runs are the suite runs of each plan, for one driver file.
var runs = map[string][]suiteRun{
	// Everything dirvol's test driver file enables: the specs that run in
	// parallel, then the snapshot specs.
	"full": {
		{Name: "storage", Focus: external, Skip: notRun},
		{Name: "snapshots", Focus: external + `.*\[Feature:VolumeSnapshotDataSource\]`, Skip: `\[Disruptive\]|\[Serial\]|` + preprovisionedSnapshots},
		{Name: "modify", Focus: external + `.*\[Feature:VolumeAttributesClass\]`, Skip: `\[Disruptive\]|\[Serial\]`},
	},
	// What CI runs: the full plan without the specs that repeat what
	// others already cover, at a cost: generic ephemeral volumes (the same
	// provisioning through another object), fsGroup ownership changes (the
	// kubelet's work, not the driver's), the [Slow] subPath variants and
	// the parallel clones. What stays covers provisioning, volumes,
	// volumeIO, volumeMode, subPath, multiVolume on one node,
	// snapshottable, provisioning from a snapshot and from a PVC,
	// volume-expand, capacity and topology.
	"ci": {
		{Name: "storage", Focus: external, Skip: notRun + `|Generic Ephemeral-volume|fsgroupchangepolicy|subPath should .*\[Slow\]|in parallel \[Slow\]`},
		{Name: "snapshots", Focus: external + `.*\[Feature:VolumeSnapshotDataSource\]`, Skip: `\[Disruptive\]|\[Serial\]|` + preprovisionedSnapshots},
		{Name: "modify", Focus: external + `.*\[Feature:VolumeAttributesClass\]`, Skip: `\[Disruptive\]|\[Serial\]`},
	},
}
