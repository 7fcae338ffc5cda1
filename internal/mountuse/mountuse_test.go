package mountuse

import (
	"errors"
	"slices"
	"testing"

	"github.com/dirvol/dirvol/internal/loopdev"
	mount "k8s.io/mount-utils"
)

// fakeLoops has one device attached to /pool/blk, bind-mounted at /pods/b,
// and devices mounted nowhere attached to /pool/attached and, being
// detached (autoclear), to /pool/closing.
type fakeLoops struct{ err error }

func (f fakeLoops) Find(file string) ([]loopdev.Device, error) {
	if f.err != nil {
		return nil, f.err
	}
	switch file {
	case "/pool/blk":
		return []loopdev.Device{{Path: "/dev/loop7", BackingFile: file}}, nil
	case "/pool/attached":
		return []loopdev.Device{{Path: "/dev/loop8", BackingFile: file}}, nil
	case "/pool/closing":
		return []loopdev.Device{{Path: "/dev/loop9", BackingFile: file, Autoclear: true}}, nil
	}
	return nil, nil
}

func (f fakeLoops) BindMounts(path string) ([]string, error) {
	if path == "/dev/loop7" {
		return []string{"/pods/b"}, nil
	}
	return nil, nil
}

func TestMountedAt(t *testing.T) {
	mounter := mount.NewFakeMounter([]mount.MountPoint{
		{Device: "/pool/vol-a", Path: "/pods/a", Type: "none", Opts: []string{"bind"}},
	})
	tests := []struct {
		name    string
		loops   fakeLoops
		path    string
		block   bool
		want    []string
		wantErr bool
	}{
		{name: "published directory", path: "/pool/vol-a", want: []string{"/pods/a"}},
		{name: "directory mounted nowhere", path: "/pool/vol-b"},
		{name: "published block file", path: "/pool/blk", block: true, want: []string{"/pods/b"}},
		{name: "block file with no device", path: "/pool/other", block: true},
		{name: "block file with a device mounted nowhere", path: "/pool/attached", block: true,
			want: []string{"loop device /dev/loop8 (mounted nowhere; the node service detaches it)"}},
		{name: "block file with a device being detached", path: "/pool/closing", block: true,
			want: []string{"loop device /dev/loop9 (mounted nowhere but held open; the kernel detaches it when its last user closes it)"}},
		{name: "loop devices cannot be read", path: "/pool/blk", block: true, loops: fakeLoops{err: errors.New("no sysfs")}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := New(mounter, tt.loops).MountedAt(tt.path, tt.block)
			if (err != nil) != tt.wantErr {
				t.Fatalf("MountedAt() error = %v, wantErr %t", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("MountedAt() = %v, want %v", got, tt.want)
			}
		})
	}
}
