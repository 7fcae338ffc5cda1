package node

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"

	"github.com/dirvol/dirvol/internal/loopdev"
	mount "k8s.io/mount-utils"
)

// fakeLoops stands in for the kernel's loop devices. Its devices are named
// /dev/fakeloopN; like the kernel it compares backing files by identity,
// keeps a device's size until Refresh, and finds the device at a target in
// the mount table of the (fake) mounter it is given. It is safe for
// concurrent use.
type fakeLoops struct {
	mounter mount.Interface

	mu   sync.Mutex
	next int
	devs map[string]*fakeDevice
	// attachErr, detachErr and refreshErr, when set, fail those calls.
	attachErr, detachErr, refreshErr error
	attaches, detaches, refreshes    int
}

type fakeDevice struct {
	dev  loopdev.Device
	file os.FileInfo
	size int64
}

var _ loopDevices = (*fakeLoops)(nil)

func newFakeLoops(mounter mount.Interface) *fakeLoops {
	return &fakeLoops{mounter: mounter, devs: make(map[string]*fakeDevice)}
}

func (f *fakeLoops) Attach(file string, opts loopdev.Options) (loopdev.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.attachErr != nil {
		return loopdev.Device{}, f.attachErr
	}
	fi, err := os.Stat(file)
	if err != nil {
		return loopdev.Device{}, err
	}
	if !fi.Mode().IsRegular() {
		return loopdev.Device{}, fmt.Errorf("attach %s: not a regular file", file)
	}
	d := loopdev.Device{
		Path:        fmt.Sprintf("/dev/fakeloop%d", f.next),
		BackingFile: file,
		ReadOnly:    opts.ReadOnly,
		DirectIO:    opts.DirectIO,
	}
	f.next++
	f.attaches++
	f.devs[d.Path] = &fakeDevice{dev: d, file: fi, size: fi.Size()}
	return d, nil
}

func (f *fakeLoops) Find(file string) ([]loopdev.Device, error) {
	fi, err := os.Stat(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []loopdev.Device
	for _, d := range f.sorted() {
		if os.SameFile(d.file, fi) {
			out = append(out, d.dev)
		}
	}
	return out, nil
}

func (f *fakeLoops) List() ([]loopdev.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []loopdev.Device
	for _, d := range f.sorted() {
		out = append(out, d.dev)
	}
	return out, nil
}

func (f *fakeLoops) At(path string) (loopdev.Device, bool, error) {
	mps, err := f.mounter.List()
	if err != nil {
		return loopdev.Device{}, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.devs[path]; ok {
		return d.dev, true, nil
	}
	p := canonical(path)
	found := ""
	for _, mp := range mps {
		if mp.Path == p {
			found = mp.Device // the topmost mount wins
		}
	}
	if d, ok := f.devs[found]; ok {
		return d.dev, true, nil
	}
	return loopdev.Device{}, false, nil
}

func (f *fakeLoops) Refresh(path string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refreshErr != nil {
		return 0, f.refreshErr
	}
	d, ok := f.devs[path]
	if !ok {
		return 0, fmt.Errorf("refresh %s: no such device", path)
	}
	fi, err := os.Stat(d.dev.BackingFile)
	if err != nil {
		return 0, err
	}
	f.refreshes++
	d.size = fi.Size()
	return d.size, nil
}

func (f *fakeLoops) Size(path string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devs[path]
	if !ok {
		return 0, fmt.Errorf("size of %s: no such device", path)
	}
	return d.size, nil
}

func (f *fakeLoops) Detach(path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.detachErr != nil {
		return f.detachErr
	}
	if _, ok := f.devs[path]; ok {
		f.detaches++
		delete(f.devs, path)
	}
	return nil
}

// set changes a device, as another program or the kernel would.
func (f *fakeLoops) set(path string, change func(*loopdev.Device)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(&f.devs[path].dev)
}

// attached returns the paths of the devices attached to files under dir.
func (f *fakeLoops) attached(dir string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, d := range f.sorted() {
		if mount.PathWithinBase(d.dev.BackingFile, dir) {
			out = append(out, d.dev.Path)
		}
	}
	return out
}

func (f *fakeLoops) counts() (attaches, detaches, refreshes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attaches, f.detaches, f.refreshes
}

func (f *fakeLoops) sorted() []*fakeDevice {
	out := make([]*fakeDevice, 0, len(f.devs))
	for _, d := range f.devs {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].dev.Path < out[j].dev.Path })
	return slices.Clip(out)
}

func (f *fakeLoops) BindMounts(path string) ([]string, error) {
	mps, err := f.mounter.List()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, mp := range mps {
		if mp.Device == path {
			out = append(out, mp.Path)
		}
	}
	return out, nil
}
