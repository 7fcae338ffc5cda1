package hostile

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

// plantLinks fills a volume directory the way a hostile pod could: links out
// of the volume by absolute and relative symbolic link, a hard link to a
// file outside, and a nested link to "/".
func (e *env) plantLinks(t *testing.T, dir, name string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, "data.txt"), "payload of "+name)
	must(t, os.MkdirAll(filepath.Join(dir, "nested/deeper"), 0o755))
	must(t, os.Symlink(e.outside, filepath.Join(dir, "outside-dir")))
	must(t, os.Symlink(filepath.Join(e.outside, "etc/passwd"), filepath.Join(dir, "outside-file")))
	must(t, os.Symlink("../../../outside", filepath.Join(dir, "relative-outside")))
	must(t, os.Symlink("/", filepath.Join(dir, "nested/deeper/root")))
	must(t, os.Link(filepath.Join(e.outside, "etc/passwd"), filepath.Join(dir, "hardlink-passwd")))
	if _, err := os.Stat(filepath.Join(dir, "relative-outside/etc/passwd")); err != nil {
		t.Fatalf("the relative link does not reach the sentinel: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func noteName(id string) string { return ".dirvol-retained-" + id + ".json" }

// TestReclaimDoesNotFollowLinks deletes volumes of every reclaim policy that
// hold links out of the volume, and checks that only the volumes changed.
func TestReclaimDoesNotFollowLinks(t *testing.T) {
	e := start(t)
	del, delDir := e.create(t, "del", map[string]string{"onDelete": "delete"})
	delX, delXDir := e.create(t, "del-extra", map[string]string{"onDelete": "delete", "pool": "extra"})
	retS, retSDir := e.create(t, "ret-symlink", map[string]string{"onDelete": "retain",
		"csi.storage.k8s.io/pvc/namespace": "ns", "csi.storage.k8s.io/pvc/name": "claim"})
	retH, retHDir := e.create(t, "ret-hardlink", map[string]string{"onDelete": "retain"})
	arch, archDir := e.create(t, "arch", map[string]string{"onDelete": "archive"})
	for name, dir := range map[string]string{"del": delDir, "del-extra": delXDir, "ret-symlink": retSDir, "ret-hardlink": retHDir, "arch": archDir} {
		e.plantLinks(t, dir, name)
	}
	must(t, os.Symlink(filepath.Join(e.outside, "etc/shadow"), filepath.Join(retSDir, noteName(retS))))
	must(t, os.Link(filepath.Join(e.outside, "home/user/notes.txt"), filepath.Join(retHDir, noteName(retH))))
	before := e.snap(t)
	retSBefore, retHBefore, archBefore := snapshot(t, retSDir), snapshot(t, retHDir), snapshot(t, archDir)

	for _, id := range []string{del, delX, retS, retH, arch} {
		_, err := e.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
		wantStatus(t, err, codes.OK)
	}
	// Only the volumes, their records, the trash, the archive and the
	// claim view may change; in a retained volume, only its note.
	view := filepath.Join(e.data, "by-pvc")
	e.unchanged(t, before, delDir, delXDir, archDir, filepath.Join(retSDir, noteName(retS)), filepath.Join(retHDir, noteName(retH)),
		filepath.Join(e.data, "catalog"), filepath.Join(e.data, "archive"), filepath.Join(e.data, ".trash"), filepath.Join(e.extra, ".trash"), view)
	if names, err := os.ReadDir(view); err != nil || len(names) != 0 {
		t.Errorf("claim view after every delete holds %v (%v), want nothing", names, err)
	}

	for _, dir := range []string{delDir, delXDir, archDir} {
		if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still exists after delete (%v)", dir, err)
		}
	}
	for _, trash := range []string{filepath.Join(e.data, ".trash"), filepath.Join(e.extra, ".trash")} {
		if entries, err := os.ReadDir(trash); err != nil || len(entries) > 0 {
			t.Errorf("trash %s after delete: %v, %v; want it empty", trash, entries, err)
		}
	}
	for _, r := range []struct {
		id, dir, name string
		before        tree
		pvc           string
	}{{retS, retSDir, "ret-symlink", retSBefore, "claim"}, {retH, retHDir, "ret-hardlink", retHBefore, ""}} {
		if diff := r.before.diff(snapshot(t, r.dir), noteName(r.id)); len(diff) > 0 {
			t.Errorf("retained volume %s changed:\n%s", r.name, strings.Join(diff, "\n"))
		}
		checkNote(t, filepath.Join(r.dir, noteName(r.id)), r.id, r.name, r.pvc)
	}
	archived, err := filepath.Glob(filepath.Join(e.data, "archive", "arch_*"))
	if err != nil || len(archived) != 1 {
		t.Fatalf("archive holds %v (%v); want one arch_<time> directory", archived, err)
	}
	if diff := archBefore.diff(snapshot(t, archived[0])); len(diff) > 0 {
		t.Errorf("archived volume differs from what was in the volume:\n%s", strings.Join(diff, "\n"))
	}
	if resp, err := e.ctrl.ListVolumes(ctx, &csi.ListVolumesRequest{}); err != nil || len(resp.GetEntries()) > 0 {
		t.Errorf("ListVolumes after deleting everything = %v, %v; want no entries", resp, err)
	}
}

// checkNote checks that the retain note is a regular file of its own (not a
// link of either kind) that names the volume.
func checkNote(t *testing.T, path, id, name, pvc string) {
	t.Helper()
	fi, err := os.Lstat(path)
	must(t, err)
	if nlink := fi.Sys().(*syscall.Stat_t).Nlink; !fi.Mode().IsRegular() || nlink != 1 {
		t.Fatalf("retain note %s is %s with %d links; want a regular file with one link", path, fi.Mode(), nlink)
	}
	data, err := os.ReadFile(path)
	must(t, err)
	var note struct{ VolumeID, Name, PVCName string }
	if err := json.Unmarshal(data, &note); err != nil || note.VolumeID != id || note.Name != name || note.PVCName != pvc {
		t.Errorf("retain note %s = %s (%v); want volumeID %s, name %s, pvcName %q", path, data, err, id, name, pvc)
	}
}

// TestPublishedVolumeSymlinks publishes a volume with a real bind mount,
// plants links through the target, and checks that stats, unpublish and
// delete neither follow them nor lose the volume's data.
func TestPublishedVolumeSymlinks(t *testing.T) {
	e := start(t)
	id, dir := e.create(t, "pub", nil)
	writeFile(t, filepath.Join(dir, "data.txt"), "published data")
	target := filepath.Join(e.root, "pods/pod-1/volumes/pub")
	publish := &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: rwCaps()[0]}
	_, err := e.node.NodePublishVolume(ctx, publish)
	wantStatus(t, err, codes.OK)
	writeFile(t, filepath.Join(target, "via-target.txt"), "written by the pod")
	must(t, os.Symlink(e.outside, filepath.Join(target, "escape")))
	must(t, os.Symlink(filepath.Join(e.outside, "etc/passwd"), filepath.Join(target, "escape-file")))
	if _, err := os.Lstat(filepath.Join(dir, "via-target.txt")); err != nil {
		t.Fatalf("a file written through the target is not in the volume, so it is not bind-mounted: %v", err)
	}
	stats, err := e.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target})
	wantStatus(t, err, codes.OK)
	for _, u := range stats.GetUsage() {
		// The volume root, two files and two links; the sentinel behind
		// the links holds more.
		if u.GetUnit() == csi.VolumeUsage_INODES && u.GetUsed() != 5 {
			t.Errorf("inodes used = %d, want 5: the walk followed a link", u.GetUsed())
		}
	}
	volBefore := snapshot(t, dir)
	before := e.snap(t)

	_, err = e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
	wantStatus(t, err, codes.OK)
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("target %s still exists after unpublish (%v)", target, err)
	}
	// Before, the target showed the volume's files; now it is gone, and the
	// volume itself is as it was.
	e.unchanged(t, before, target)
	if diff := volBefore.diff(snapshot(t, dir)); len(diff) > 0 {
		t.Errorf("unpublish changed the volume:\n%s", strings.Join(diff, "\n"))
	}
	_, err = e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
	wantStatus(t, err, codes.OK)

	_, err = e.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
	wantStatus(t, err, codes.OK)
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still exists after delete (%v)", dir, err)
	}
}

// TestTargetPathsIntoTheTree publishes and unpublishes (or only unpublishes)
// at targets that lead into the driver's own directories or the sentinel,
// each on a fresh driver. A target with a ".." element or a symbolic link
// anywhere in it, and one that is a pool root, lies in one or contains one,
// is refused by both calls with nothing changed on disk. Every cycle must
// leave the tree as it was.
func TestTargetPathsIntoTheTree(t *testing.T) {
	dotdot := func(*env) []string { return []string{"target_path", `".." element`} }
	symlinked := func(*env) []string { return []string{"target_path", "symbolic link"} }
	overlaps := func(pool func(e *env) string) func(*env) []string {
		return func(e *env) []string { return []string{"target_path", "overlaps the dirvol pool at " + pool(e)} }
	}
	data := overlaps(func(e *env) string { return e.data })
	extra := overlaps(func(e *env) string { return e.extra })
	link := func(t *testing.T, e *env, to string) string {
		must(t, os.MkdirAll(e.root+"/pods", 0o755))
		must(t, os.Symlink(to, e.root+"/pods/link"))
		return e.root + "/pods/link"
	}
	for _, tc := range []struct {
		name    string
		target  func(t *testing.T, e *env, own, other string) string
		publish bool // publish first; false: unpublish alone
		code    codes.Code
		words   func(e *env) []string // what the message of a refusal says
	}{
		{"dotdot to a new directory", func(_ *testing.T, e *env, _, _ string) string { return e.root + "/pods/x/../../fresh" }, true,
			codes.InvalidArgument, dotdot},
		{"dotdot onto the sentinel", func(_ *testing.T, e *env, _, _ string) string { return e.root + "/pods/../outside/home" }, true,
			codes.InvalidArgument, dotdot},
		{"dotdot into another volume's directory", func(_ *testing.T, e *env, _, other string) string {
			return e.root + "/pods/../data/volumes/" + filepath.Base(other)
		}, true, codes.InvalidArgument, dotdot},
		{"symlinked parent into the sentinel", func(t *testing.T, e *env, _, _ string) string {
			return link(t, e, e.outside+"/home") + "/t"
		}, true, codes.InvalidArgument, symlinked},
		{"symlink onto the sentinel's etc", func(t *testing.T, e *env, _, _ string) string {
			return link(t, e, e.outside+"/etc")
		}, true, codes.InvalidArgument, symlinked},
		{"the data dir", func(_ *testing.T, e *env, _, _ string) string { return e.data }, true, codes.InvalidArgument, data},
		{"a new directory in the data dir", func(_ *testing.T, e *env, _, _ string) string { return e.data + "/fresh" }, true,
			codes.InvalidArgument, data},
		{"the pool's volumes dir", func(_ *testing.T, e *env, _, _ string) string { return e.data + "/volumes" }, true,
			codes.InvalidArgument, data},
		{"the catalog dir", func(_ *testing.T, e *env, _, _ string) string { return e.data + "/catalog" }, true,
			codes.InvalidArgument, data},
		{"the extra pool", func(_ *testing.T, e *env, _, _ string) string { return e.extra }, true, codes.InvalidArgument, extra},
		{"another volume's directory", func(_ *testing.T, _ *env, _, other string) string { return other }, true,
			codes.InvalidArgument, data},
		{"the volume's own directory", func(_ *testing.T, _ *env, own, _ string) string { return own }, true,
			codes.InvalidArgument, data},
		{"the archive dir", func(_ *testing.T, e *env, _, _ string) string { return e.data + "/archive" }, true,
			codes.InvalidArgument, data},
		{"the trash dir", func(_ *testing.T, e *env, _, _ string) string { return e.data + "/.trash" }, true,
			codes.InvalidArgument, data},
		{"the parent of the data dir", func(_ *testing.T, e *env, _, _ string) string { return e.root }, true,
			codes.InvalidArgument, data},
		{"symlinked parent into the pool", func(t *testing.T, e *env, _, other string) string {
			return link(t, e, e.data+"/volumes") + "/" + filepath.Base(other)
		}, true, codes.InvalidArgument, symlinked},
		{"symlink to the extra pool", func(t *testing.T, e *env, _, _ string) string { return link(t, e, e.extra) }, true,
			codes.InvalidArgument, symlinked},
		{"unpublish only: another volume's directory", func(_ *testing.T, _ *env, _, other string) string { return other }, false,
			codes.InvalidArgument, data},
		{"unpublish only: the archive dir", func(_ *testing.T, e *env, _, _ string) string { return e.data + "/archive" }, false,
			codes.InvalidArgument, data},
		{"unpublish only: the trash dir", func(_ *testing.T, e *env, _, _ string) string { return e.data + "/.trash" }, false,
			codes.InvalidArgument, data},
		{"unpublish only: the data dir", func(_ *testing.T, e *env, _, _ string) string { return e.data }, false,
			codes.InvalidArgument, data},
		{"unpublish only: the parent of the data dir", func(_ *testing.T, e *env, _, _ string) string { return e.root }, false,
			codes.InvalidArgument, data},
		{"unpublish only: dotdot into another volume's directory", func(_ *testing.T, e *env, _, other string) string {
			return e.root + "/pods/../data/volumes/" + filepath.Base(other)
		}, false, codes.InvalidArgument, dotdot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t)
			own, ownDir := e.create(t, "own", nil)
			_, otherDir := e.create(t, "other", nil)
			target := tc.target(t, e, ownDir, otherDir)
			var words []string
			if tc.words != nil {
				words = tc.words(e)
			}
			before := e.snap(t)
			if tc.publish {
				_, err := e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: own, TargetPath: target, VolumeCapability: rwCaps()[0]})
				wantStatus(t, err, tc.code, words...)
				diff := before.diff(e.snap(t))
				switch {
				case tc.code != codes.OK && len(diff) > 0:
					t.Errorf("the refused publish changed the disk:\n%s", strings.Join(diff, "\n"))
				case len(diff) > 0:
					t.Logf("while published:\n%s", strings.Join(diff, "\n"))
				}
			}
			_, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: own, TargetPath: target})
			wantStatus(t, err, tc.code, words...)
			e.unchanged(t, before)
		})
	}
}

// TestArchiveNames deletes archive-policy volumes whose archive names are
// hard to make: the longest PVC metadata Kubernetes allows, and the same
// volume name archived twice within one second. Every volume CreateVolume
// accepted must be deletable, and every archive must keep its data.
func TestArchiveNames(t *testing.T) {
	e := start(t)
	stamp := regexp.MustCompile(`^_[0-9]{8}T[0-9]{6}Z$`)
	for _, tc := range []struct {
		name, pv string
		whole    bool // the archive is named after the whole PV name
	}{
		// <namespace>_<pvc>_<pv>_<stamp> passes 255 bytes, so the archive is
		// named <pv>_<stamp>.
		{"long PVC metadata", "pvc-0123abcd-0123-4567-89ab-0123456789ab", true},
		// Even <pv>_<stamp> passes 255 bytes, so the PV name is cut.
		{"long PVC metadata and PV name", strings.Repeat("p", 253), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, dir := e.create(t, "long", map[string]string{"onDelete": "archive",
				"csi.storage.k8s.io/pvc/namespace": strings.Repeat("n", 63), "csi.storage.k8s.io/pvc/name": strings.Repeat("c", 253),
				"csi.storage.k8s.io/pv/name": tc.pv})
			writeFile(t, filepath.Join(dir, "data.txt"), "long "+tc.name)
			archive := filepath.Join(e.data, "archive")
			archivedBefore := map[string]bool{}
			entries, err := os.ReadDir(archive)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			for _, en := range entries {
				archivedBefore[en.Name()] = true
			}
			before := e.snap(t)

			_, err = e.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			wantStatus(t, err, codes.OK)
			// The claim's entry in the view goes with the volume (checked
			// below); nothing else changes.
			view := filepath.Join(e.data, "by-pvc")
			e.unchanged(t, before, dir, archive, view, filepath.Join(e.data, "catalog"), filepath.Join(e.data, ".trash"))
			if names, err := os.ReadDir(view); err != nil || len(names) != 0 {
				t.Errorf("claim view after the delete holds %v (%v), want nothing", names, err)
			}
			_, err = e.ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
			wantStatus(t, err, codes.NotFound, mentionID(id)...)

			entries, err = os.ReadDir(archive)
			must(t, err)
			var added []string
			for _, en := range entries {
				if !archivedBefore[en.Name()] {
					added = append(added, en.Name())
				}
			}
			if len(added) != 1 {
				t.Fatalf("the delete added %q to %s; want one <pv-name>_<time> directory", added, archive)
			}
			name := added[0]
			cut := strings.LastIndexByte(name, '_')
			switch pv := name[:max(cut, 0)]; {
			case cut < 1 || !stamp.MatchString(name[cut:]) || !strings.HasPrefix(tc.pv, pv):
				t.Errorf("archive %q is not named <pv-name>_<time> after PV %q", name, tc.pv)
			case tc.whole && pv != tc.pv:
				t.Errorf("archive %q is named after %q, not the whole PV name %q", name, pv, tc.pv)
			case len(name)+len("_")+len(id) > 255:
				// A taken archive name gets "_<volume ID>" appended.
				t.Errorf("archive name %q is %d bytes: no room to append the volume ID within one path element", name, len(name))
			}
			if data, err := os.ReadFile(filepath.Join(archive, name, "data.txt")); err != nil || string(data) != "long "+tc.name {
				t.Errorf("archived data.txt = %q, %v; want the volume's data", data, err)
			}
		})
	}

	for _, content := range []string{"first", "second"} {
		id, dir := e.create(t, "again", map[string]string{"onDelete": "archive"})
		writeFile(t, filepath.Join(dir, "data.txt"), content)
		_, err := e.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
		wantStatus(t, err, codes.OK)
	}
	archived, _ := filepath.Glob(filepath.Join(e.data, "archive", "again_*", "data.txt"))
	var got []string
	for _, p := range archived {
		data, _ := os.ReadFile(p)
		got = append(got, string(data))
	}
	if slices.Sort(got); !slices.Equal(got, []string{"first", "second"}) {
		t.Errorf("archive holds %v with contents %q; want both volumes' data", archived, got)
	}
}
