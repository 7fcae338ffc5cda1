package pool

import (
	"fmt"
	"math/big"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Spec is one --pool flag:
//
//	name=NAME,path=DIR[,backend=dir|btrfs]
//	name=NAME,image=FILE,size=SIZE[,path=MOUNTPOINT]
type Spec struct {
	// Name is how StorageClasses refer to the pool (parameter "pool").
	Name string
	// Path is the pool's root directory; it is created when missing. For
	// an image pool it is where the image is mounted; the driver's Config
	// fills it in when the flag names none.
	Path string
	// Backend is BackendDir or BackendBtrfs, or empty to choose by the
	// filesystem under Path (btrfs there means BackendBtrfs). Image pools
	// are always BackendBtrfs.
	Backend string
	// Image, when set, makes an image-backed pool: a file the driver
	// creates, formats btrfs and loop-mounts at Path.
	Image string
	// Size is the image's size in bytes; only for image pools.
	Size int64
	// Shared marks a pool whose root directory also holds things that are
	// not the pool's: the pool rooted at --data-dir shares it with the
	// catalog and with image pools mounted under <data-dir>/pools. Such a
	// pool owns only its managed directories (volumes, snapshots, archive,
	// .trash, .staging), not all of Path. It is never parsed from a flag.
	Shared bool
}

// minImageSize is the least an image pool accepts: mkfs.btrfs refuses
// much smaller devices, and a pool must hold some volumes.
const minImageSize = 128 << 20

const specUsage = "want name=NAME,path=DIR[,backend=dir|btrfs] or name=NAME,image=FILE,size=SIZE[,path=MOUNTPOINT]"

// ParseSpec parses one --pool flag value.
func ParseSpec(s string) (Spec, error) {
	var sp Spec
	var size string
	seen := make(map[string]bool)
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Spec{}, fmt.Errorf("pool %q: %q is not key=value (%s)", s, kv, specUsage)
		}
		if seen[k] {
			return Spec{}, fmt.Errorf("pool %q: %s= is given twice", s, k)
		}
		seen[k] = true
		switch k {
		case "name":
			sp.Name = v
		case "path":
			sp.Path = v
		case "backend":
			sp.Backend = v
		case "image":
			sp.Image = v
		case "size":
			size = v
		default:
			return Spec{}, fmt.Errorf("pool %q: unknown key %q (%s)", s, k, specUsage)
		}
	}
	if err := checkName(sp.Name); err != nil {
		return Spec{}, fmt.Errorf("pool %q: name: %w", s, err)
	}
	switch sp.Backend {
	case "", BackendDir, BackendBtrfs:
	default:
		return Spec{}, fmt.Errorf("pool %q: backend %q is neither %s nor %s", s, sp.Backend, BackendDir, BackendBtrfs)
	}
	if sp.Image == "" {
		if seen["size"] {
			return Spec{}, fmt.Errorf("pool %q: size= applies only to image pools (image=FILE)", s)
		}
		if !filepath.IsAbs(sp.Path) {
			return Spec{}, fmt.Errorf("pool %q: path %q must be absolute", s, sp.Path)
		}
		sp.Path = filepath.Clean(sp.Path)
		return sp, nil
	}
	if !filepath.IsAbs(sp.Image) {
		return Spec{}, fmt.Errorf("pool %q: image %q must be absolute", s, sp.Image)
	}
	sp.Image = filepath.Clean(sp.Image)
	if sp.Backend == BackendDir {
		return Spec{}, fmt.Errorf("pool %q: an image pool is formatted btrfs; drop backend=dir", s)
	}
	sp.Backend = BackendBtrfs
	if !seen["size"] {
		return Spec{}, fmt.Errorf("pool %q: an image pool needs size=, e.g. size=20Gi", s)
	}
	n, err := ParseSize(size)
	if err != nil {
		return Spec{}, fmt.Errorf("pool %q: %w", s, err)
	}
	if n < minImageSize {
		return Spec{}, fmt.Errorf("pool %q: size %s is less than 128Mi, the least an image pool works with", s, size)
	}
	sp.Size = n
	if seen["path"] {
		if !filepath.IsAbs(sp.Path) {
			return Spec{}, fmt.Errorf("pool %q: path %q must be absolute", s, sp.Path)
		}
		sp.Path = filepath.Clean(sp.Path)
	}
	return sp, nil
}

// String renders the spec as ParseSpec reads it.
func (s Spec) String() string {
	out := "name=" + s.Name
	if s.Path != "" {
		out += ",path=" + s.Path
	}
	if s.Image != "" {
		return out + ",image=" + s.Image + ",size=" + strconv.FormatInt(s.Size, 10)
	}
	if s.Backend != "" {
		out += ",backend=" + s.Backend
	}
	return out
}

// quantity is a Kubernetes-style quantity as sizes are written in
// StorageClasses and PVCs: a decimal number and an optional suffix.
var quantity = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$`)

var quantitySuffixes = map[string]int64{
	"":   1,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
	"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}

// ParseSize reads a size such as 20Gi, 1.5G or 134217728 into bytes,
// rounding a fraction of a byte up as Kubernetes does.
func ParseSize(s string) (int64, error) {
	m := quantity.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("size %q: want a number with an optional suffix Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P or E", s)
	}
	r, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, fmt.Errorf("size %q: %q is not a number", s, m[1])
	}
	r.Mul(r, new(big.Rat).SetInt64(quantitySuffixes[m[2]]))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !r.IsInt() {
		n.Add(n, big.NewInt(1))
	}
	if !n.IsInt64() {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n.Int64(), nil
}

// Specs is a repeatable --pool flag.
type Specs []Spec

// String implements flag.Value.
func (s *Specs) String() string {
	parts := make([]string, 0, len(*s))
	for _, sp := range *s {
		parts = append(parts, sp.String())
	}
	return strings.Join(parts, " ")
}

// Set implements flag.Value.
func (s *Specs) Set(v string) error {
	sp, err := ParseSpec(v)
	if err != nil {
		return err
	}
	*s = append(*s, sp)
	return nil
}

// owned lists the directories the pool owns: all of Path, or only its
// managed directories when the pool is Shared.
func (s Spec) owned() []string {
	if !s.Shared {
		return []string{s.Path}
	}
	var out []string
	for _, d := range []string{volumesDir, snapshotsDir, archiveDir, trashDir, stagingDir} {
		out = append(out, filepath.Join(s.Path, d))
	}
	return out
}

// Overlaps reports whether dir and a directory the pool owns lie one
// inside the other (or are the same), so that the driver can keep its own
// directories, such as the catalog, out of every pool.
func (s Spec) Overlaps(dir string) bool {
	for _, o := range s.owned() {
		if nested(o, dir) || nested(dir, o) {
			return true
		}
	}
	return false
}

// contains reports whether file lies inside a directory the pool owns.
func (s Spec) contains(file string) bool {
	for _, o := range s.owned() {
		if nested(o, file) {
			return true
		}
	}
	return false
}

// ValidateSpecs refuses duplicate names, pools whose directories overlap,
// two pools on one image, and images inside a pool: two pools sharing
// directories would each see the other's volumes as orphans, a delete in
// one could reach into the other, and an image inside a pool would be
// inside its own or another pool's data.
func ValidateSpecs(specs []Spec) error {
	for i, a := range specs {
		if a.Path == "" {
			return fmt.Errorf("pool %q has no path", a.Name)
		}
		for _, b := range specs[i+1:] {
			if a.Name == b.Name {
				return fmt.Errorf("pool name %q is given twice", a.Name)
			}
			if a.Image != "" && a.Image == b.Image {
				return fmt.Errorf("pools %q and %q use the same image %s; give each pool its own image", a.Name, b.Name, a.Image)
			}
			for _, o := range b.owned() {
				if a.Overlaps(o) {
					return fmt.Errorf("pools %q (%s) and %q (%s) overlap; give each pool its own directory", a.Name, a.Path, b.Name, b.Path)
				}
			}
		}
		if a.Image == "" {
			continue
		}
		for _, b := range specs {
			if b.contains(a.Image) {
				return fmt.Errorf("image %s of pool %q lies inside pool %q (%s); keep images outside every pool", a.Image, a.Name, b.Name, b.Path)
			}
		}
	}
	return nil
}

func nested(parent, child string) bool {
	rel, err := filepath.Rel(parent, child)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
