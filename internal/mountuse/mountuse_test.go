package mountuse

import (
	"errors"
	"slices"
	"testing"

	"github.com/dirvol/dirvol/internal/loopdev"
	mount "k8s.io/mount-utils"
)

// fakeLoops has one device attached to /pool/blk, bind-mounted at /pods/b.
type fakeLoops struct{ err error }

func (f fakeLoops) Find(file string) ([]loopdev.Device, error) {
	if f.err != nil {
		return nil, f.err
	}
	if file == "/pool/blk" {
		return []loopdev.Device{{Path: "/dev/loop7", BackingFile: file}}, nil
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
