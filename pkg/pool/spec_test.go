package pool

import (
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Spec
		err  string // "" for valid; else a word the error must hold
	}{
		{"valid", "name=fast,path=/mnt/fast", Spec{Name: "fast", Path: "/mnt/fast"}, ""},
		{"cleaned path", "path=/mnt/fast/,name=fast", Spec{Name: "fast", Path: "/mnt/fast"}, ""},
		{"backend dir", "name=a,path=/mnt,backend=dir", Spec{Name: "a", Path: "/mnt", Backend: "dir"}, ""},
		{"backend btrfs", "name=a,path=/mnt,backend=btrfs", Spec{Name: "a", Path: "/mnt", Backend: "btrfs"}, ""},
		{"unknown backend", "name=a,path=/mnt,backend=zfs", Spec{}, "zfs"},
		{"relative path", "name=fast,path=mnt", Spec{}, "absolute"},
		{"no name", "path=/mnt", Spec{}, "name"},
		{"slash in name", "name=a/b,path=/mnt", Spec{}, "name"},
		{"size without image", "name=a,path=/mnt,size=1Gi", Spec{}, "image"},
		{"unknown key", "name=a,path=/mnt,color=red", Spec{}, "color"},
		{"key twice", "name=a,path=/mnt,path=/b", Spec{}, "twice"},
		{"not key=value", "fast", Spec{}, "key=value"},
		{"image", "name=img,image=/var/lib/dirvol/images/a.img,size=20Gi",
			Spec{Name: "img", Image: "/var/lib/dirvol/images/a.img", Size: 20 << 30, Backend: "btrfs"}, ""},
		{"image with mount point", "name=img,image=/i/a.img,size=1G,path=/mnt/a/",
			Spec{Name: "img", Image: "/i/a.img", Size: 1e9, Backend: "btrfs", Path: "/mnt/a"}, ""},
		{"image forced btrfs", "name=img,image=/i/a.img,size=128Mi,backend=btrfs",
			Spec{Name: "img", Image: "/i/a.img", Size: 128 << 20, Backend: "btrfs"}, ""},
		{"image as dir", "name=img,image=/i/a.img,size=1Gi,backend=dir", Spec{}, "backend=dir"},
		{"image without size", "name=img,image=/i/a.img", Spec{}, "size="},
		{"image relative", "name=img,image=a.img,size=1Gi", Spec{}, "absolute"},
		{"image too small", "name=img,image=/i/a.img,size=1Mi", Spec{}, "128Mi"},
		{"image bad size", "name=img,image=/i/a.img,size=lots", Spec{}, "lots"},
		{"image relative mount point", "name=img,image=/i/a.img,size=1Gi,path=m", Spec{}, "absolute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSpec(tc.in)
			switch {
			case tc.err == "" && (err != nil || got != tc.want):
				t.Fatalf("ParseSpec(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("ParseSpec(%q) = %+v, %v; want an error naming %q", tc.in, got, err, tc.err)
			}
			if err != nil {
				return
			}
			again, err := ParseSpec(got.String())
			if err != nil || again != got {
				t.Errorf("ParseSpec(%q.String() = %q) = %+v, %v", tc.in, got.String(), again, err)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"134217728", 134217728, true},
		{"20Gi", 20 << 30, true},
		{"1.5Gi", 3 << 29, true},
		{"512Mi", 512 << 20, true},
		{"1Ti", 1 << 40, true},
		{"2k", 2000, true},
		{"3M", 3e6, true},
		{"1G", 1e9, true},
		{"7E", 7e18, true},
		{"0.5", 1, true}, // rounded up, as Kubernetes does
		{"8Ei", 0, false},
		{"10E", 0, false},
		{"", 0, false},
		{"Gi", 0, false},
		{"1GiB", 0, false},
		{"-1Gi", 0, false},
		{"1e9", 0, false},
		{"1/2", 0, false},
		{" 1Gi", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestValidateSpecs(t *testing.T) {
	dataDir := Spec{Name: "default", Path: "/var/lib/dirvol", Shared: true}
	tests := []struct {
		name  string
		specs []Spec
		err   string // "" for valid
	}{
		{"distinct", []Spec{{Name: "a", Path: "/p/a"}, {Name: "b", Path: "/p/b"}}, ""},
		{"prefix but not nested", []Spec{{Name: "a", Path: "/p/a"}, {Name: "b", Path: "/p/ab"}}, ""},
		{"same name", []Spec{{Name: "a", Path: "/p/a"}, {Name: "a", Path: "/p/b"}}, "twice"},
		{"nested", []Spec{{Name: "a", Path: "/p"}, {Name: "b", Path: "/p/b"}}, "overlap"},
		{"same path", []Spec{{Name: "a", Path: "/p"}, {Name: "b", Path: "/p"}}, "overlap"},
		{"no path", []Spec{{Name: "a"}}, "no path"},
		{"image pool mounted under the data dir", []Spec{dataDir,
			{Name: "img", Path: "/var/lib/dirvol/pools/img", Image: "/var/lib/dirvol/images/img.img"}}, ""},
		{"pool beside the data dir's managed directories", []Spec{dataDir,
			{Name: "x", Path: "/var/lib/dirvol/x"}}, ""},
		{"pool inside the data dir's volumes", []Spec{dataDir,
			{Name: "x", Path: "/var/lib/dirvol/volumes/x"}}, "overlap"},
		{"pool inside the data dir's trash", []Spec{dataDir,
			{Name: "x", Path: "/var/lib/dirvol/.trash"}}, "overlap"},
		{"pool holding the data dir", []Spec{dataDir, {Name: "x", Path: "/var/lib"}}, "overlap"},
		{"pool holding the data dir, listed first", []Spec{{Name: "x", Path: "/var/lib"}, dataDir}, "overlap"},
		{"image pools nested", []Spec{
			{Name: "a", Path: "/var/lib/dirvol/pools/a", Image: "/i/a.img"},
			{Name: "b", Path: "/var/lib/dirvol/pools/a/b", Image: "/i/b.img"}}, "overlap"},
		{"one image, two pools", []Spec{
			{Name: "a", Path: "/m/a", Image: "/i/a.img"},
			{Name: "b", Path: "/m/b", Image: "/i/a.img"}}, "same image"},
		{"image inside its own mount point", []Spec{
			{Name: "a", Path: "/m/a", Image: "/m/a/a.img"}}, "inside"},
		{"image inside another pool", []Spec{{Name: "d", Path: "/p"},
			{Name: "a", Path: "/m/a", Image: "/p/a.img"}}, "inside"},
		{"image inside the data dir's volumes", []Spec{dataDir,
			{Name: "a", Path: "/m/a", Image: "/var/lib/dirvol/volumes/a.img"}}, "inside"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateSpecs(tc.specs)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("ValidateSpecs = %v, want nil", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("ValidateSpecs = %v, want an error naming %q", err, tc.err)
			}
		})
	}
}
